"""The error every export module raises for an export that cannot be made.

Loading and checking the model (`spec`), writing an artifact (`writers`) and checking the flags and the
output directory (`export_lib`) all raise `ExportError`, a `UserError`, so the binary prints it as one
sentence and exits non-zero; `export_lib.ParityError` refines it for an artifact that computes
something different from the Keras model.
"""

from pcnas_tf import errors


class ExportError(errors.UserError):
  """An export cannot be made: bad flags, files, model or machine."""
