"""User errors: library code raises `UserError` (or a subclass) with one sentence that names the bad
value and what is allowed. Binaries report them through `pcnas_tf.cli.app.run_main`."""


class UserError(ValueError):
  """A mistake a user can make and fix: a bad flag, file, budget or data set."""


def check_at_least(value, low, what: str) -> None:
  """Raises `UserError` unless `value >= low`; `what` names the setting, e.g. "Pool size P (--pool_size)"."""
  if value < low:
    raise UserError(f"{what} is {value}; it must be at least {low}.")


def check_one_of(value, allowed, what: str) -> None:
  """Raises `UserError` unless `value` is one of `allowed`."""
  if value not in allowed:
    raise UserError(f"{what} {value!r} is unknown; allowed: {', '.join(allowed)}.")
