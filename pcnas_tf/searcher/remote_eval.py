"""Potential evaluation by a pool of worker processes, through keras-tuner's distributed Oracle.

The search process is keras-tuner's chief: it holds the pool (`PCNASOracle`) and serves its trials with
keras-tuner's own gRPC service (`OracleServicer`, the v4 protos generated for protobuf 4, which load and
run unchanged with the protobuf 7 and grpcio 1.85 of requirements.txt). Evaluation workers are
keras-tuner clients (`OracleClient`): each pulls a trial (a candidate, or a chunk of its completions, as
the chief drew them), loads the supergraph of that interval from the work directory, counts the correct
predictions with `PotentialEvaluator` and reports them back. Both ends are configured the standard
way, by `KERASTUNER_TUNER_ID` (`chief` for the search), `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT`; the work directory must be shared (the workers read config.json and the
interval weights from it).

Two pieces of keras-tuner's distributed mode are replaced, because they would hang this search:
  * `oracle_chief.start_server` blocks until the tuning ends, but the chief here must go on training
    between intervals; `serving` runs the same servicer in the background for the whole search, and
    when the search ends waits, a bounded time, for the workers to be told to stop.
  * `OracleClient` waits up to an hour on every call (keras-tuner issues 990 and 645: a fixed deadline
    long enough for a slow chief start leaves workers hanging when the chief is gone). The worker uses
    the same client with a gRPC deadline interceptor: `connect_timeout` until the chief first answers,
    `rpc_timeout` after; a worker whose chief stops answering exits cleanly.
A worker that dies or hangs holds a leased trial: the Oracle hands it to another worker when the lease
ends (issue 915: a failed worker must not stall the chief or lose its trial).
"""

import collections
import contextlib
import copy
import dataclasses
import json
import os
import time
from concurrent import futures

import grpc
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.distribute import oracle_client
from keras_tuner.src.distribute import utils as dist_utils
from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine import trial as trial_module

from pcnas_tf.training import checkpoint
from pcnas_tf import errors
from pcnas_tf import files
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import pool as pool_lib

WEIGHTS_DIR = "eval_weights"
CHIEF = "chief"
_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


@dataclasses.dataclass(frozen=True)
class ServeSettings:
  """Where the chief serves trials, and how long a worker may hold one.

  Attributes:
    address: `ip:port` to listen on (KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT).
    lease_timeout: seconds a worker may hold a trial before it goes to another worker; longer than
      one trial's scoring (P x N x S forward passes of the suffix), or trials are scored twice.
    stop_grace: seconds the finished chief keeps serving so that polling workers learn the end.
    trial_completions: the most completions one trial carries (None: a trial per candidate); smaller
      trials keep more workers busy (up to candidates x chunks) at more trials per interval.
  """
  address: str
  lease_timeout: float = 600.0
  stop_grace: float = 30.0
  trial_completions: int = None


def serve_settings_from_env(lease_timeout: float, stop_grace: float = 30.0, trial_completions=None):
  """The chief's `ServeSettings` from the KERASTUNER_* variables, or None when they are not set."""
  try:
    if not dist_utils.has_chief_oracle():
      return None
  except RuntimeError as error:  # IP set without PORT or TUNER_ID
    raise errors.UserError(str(error).replace("\n", " ")) from error
  if not dist_utils.is_chief_oracle():
    raise errors.UserError(
        f"KERASTUNER_TUNER_ID is {os.environ['KERASTUNER_TUNER_ID']!r}, but the search is the chief; "
        f"set it to 'chief' here and start workers with `python -m pcnas_tf.eval_worker_main`.")
  errors.check_at_least(lease_timeout, 1, "Trial lease (--eval_lease_timeout)")
  if trial_completions is not None:
    errors.check_at_least(trial_completions, 1, "Completions per trial (--eval_trial_completions)")
  return ServeSettings(_env_address(), lease_timeout, stop_grace, trial_completions)


def worker_id_from_env():
  """This worker's KERASTUNER_TUNER_ID, after checking that the KERASTUNER_* variables name a chief."""
  try:
    if not dist_utils.has_chief_oracle():
      raise errors.UserError("KERASTUNER_ORACLE_IP is not set; a worker needs KERASTUNER_TUNER_ID, "
                             "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT of its chief.")
  except RuntimeError as error:
    raise errors.UserError(str(error).replace("\n", " ")) from error
  if dist_utils.is_chief_oracle():
    raise errors.UserError(f"KERASTUNER_TUNER_ID is {os.environ['KERASTUNER_TUNER_ID']!r}, which names "
                           f"the chief; give each worker another id, such as 'worker0'.")
  return os.environ["KERASTUNER_TUNER_ID"]


def _env_address():
  return f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"


@contextlib.contextmanager
def serving(oracle, settings):
  """Serves `oracle`'s trials over keras-tuner's gRPC service while the block runs (nothing if None)."""
  if settings is None:
    yield
    return
  # No SO_REUSEPORT (gRPC's default on Linux): a second chief on the same port must fail, not share it.
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
  protos.get_service_grpc().add_OracleServicer_to_server(_Servicer(oracle), server)
  try:
    bound = server.add_insecure_port(settings.address)
  except RuntimeError:
    bound = 0
  if not bound:
    raise errors.UserError(f"Cannot serve trials on {settings.address!r} (KERASTUNER_ORACLE_IP and "
                           f"_PORT): the port is taken or the address is not this machine's.")
  server.start()
  print(f"Serving potential evaluation to workers at {settings.address}.", flush=True)
  finished = False
  try:
    yield
    finished = True
  finally:
    if finished:
      _wait_for_workers_to_stop(oracle, settings.stop_grace)
    server.stop(grace=1.0).wait()


class _Servicer(oracle_chief.OracleServicer):
  """keras-tuner's servicer, with the search space a trial carries serialised once, not on every call.

  A trial travels with its hyperparameters: the whole space (a Choice per mixop) and its values.
  keras-tuner builds the space's proto from Python objects for every CreateTrial and UpdateTrial answer
  and rebuilds the objects from it for every EndTrial: with 21 mixops of 10 operators, most of the
  chief's time per trial, which bounds how many workers it keeps busy (bench.eval_simulation). A trial's
  space is a copy of the Oracle's, which a search does not change: its proto is built once (again if
  the names change), and a reported trial that sends it back unchanged gets the space of the Oracle's own
  copy of the trial. Values, metrics, score and status go through keras-tuner's code as before.
  """

  def __init__(self, oracle):
    super().__init__(oracle)
    self._space = (None, None)  # (the names of a space, its proto)

  def _space_proto(self, hyperparameters):
    names = tuple(hp.name for hp in hyperparameters.space)
    if self._space[0] != names:
      self._space = (names, hyperparameters.to_proto().space)
    return self._space[1]

  def _trial_proto(self, trial):
    values_only = hp_module.HyperParameters()
    values_only.values = trial.hyperparameters.values
    light = copy.copy(trial)
    light.hyperparameters = values_only
    proto = light.to_proto()
    proto.hyperparameters.space.CopyFrom(self._space_proto(trial.hyperparameters))
    return proto

  def CreateTrial(self, request, context):
    trial = self.oracle.create_trial(request.tuner_id)
    if trial.status == trial_module.TrialStatus.STOPPED:
      self.stop_triggered = True
    return protos.get_service().CreateTrialResponse(trial=self._trial_proto(trial))

  def UpdateTrial(self, request, context):
    trial = self.oracle.update_trial(request.trial_id, request.metrics, step=request.step)
    return protos.get_service().UpdateTrialResponse(trial=self._trial_proto(trial))

  def EndTrial(self, request, context):
    own = self.oracle.trials.get(request.trial.trial_id)
    if own is None or request.trial.hyperparameters.space != self._space_proto(own.hyperparameters):
      return super().EndTrial(request, context)
    light = protos.get_proto().Trial()
    light.CopyFrom(request.trial)
    light.hyperparameters.ClearField("space")
    trial = trial_module.Trial.from_proto(light)
    hyperparameters = copy.copy(own.hyperparameters)  # the same space objects, the reported values
    hyperparameters.values = trial.hyperparameters.values
    trial.hyperparameters = hyperparameters
    self.oracle.end_trial(trial)
    return protos.get_service().EndTrialResponse()


def _wait_for_workers_to_stop(oracle, grace):
  """Waits until every worker that asked for a trial was told the search is over (at most `grace` s).

  keras-tuner's chief waits for this without a bound (`oracle_chief.exit_chief`); a worker that died
  would keep it waiting forever.
  """
  deadline = time.monotonic() + grace
  while time.monotonic() < deadline and not oracle_chief.exit_chief(oracle):
    time.sleep(0.2)


# Interval weights ----------------------------------------------------------------------------------------

def save_interval_weights(work_dir, interval, supergraph, state):
  """Writes the supergraph the workers score interval `interval` on (once: scoring does not train)."""
  directory = os.path.join(work_dir, WEIGHTS_DIR)
  if not checkpoint.is_complete(_weights_path(work_dir, interval)):
    pairs = checkpoint.named(supergraph.variables, checkpoint.SUPERGRAPH)
    checkpoint.save(directory, interval, checkpoint.arrays_of(pairs), state)


def load_interval_weights(work_dir, interval, supergraph, timeout=60.0):
  """Assigns the weights of interval `interval` to `supergraph` (waits for a shared file system)."""
  path, deadline = _weights_path(work_dir, interval), time.monotonic() + timeout
  while not checkpoint.is_complete(path):
    if time.monotonic() > deadline:
      raise errors.UserError(f"The weights of interval {interval} are not in {path!r}; is --work_dir the "
                             f"search's work directory, on a file system the chief shares?")
    time.sleep(0.5)
  arrays, _ = checkpoint.load(path)
  # A clear error if the worker runs another pcnas_tf version or space.
  checkpoint.assign(checkpoint.named(supergraph.variables, checkpoint.SUPERGRAPH), arrays, path,
                    "this worker's supergraph")


def _weights_path(work_dir, interval):
  return checkpoint.path_of(os.path.join(work_dir, WEIGHTS_DIR), interval)


# Scoring --------------------------------------------------------------------------------------------------

def score_trials(evaluator, trials) -> list:
  """Scores trials together (their common prefixes computed once) and returns each one's metrics: the
  `correct` predictions and `images` of its completions, and their ratio as `potential` (NaN: none).

  Args:
    evaluator: a `PotentialEvaluator` (or anything with its `correct_counts` and `batch_size`).
    trials: hyperparameter values of trials, with the completions the Oracle drew.
  """
  completions = {i: [tuple(p) for p in json.loads(v[oracle_lib.COMPLETIONS])] for i, v in enumerate(trials)}
  offsets = {i: int(v.get(oracle_lib.FIRST, 0)) for i, v in enumerate(trials)}
  counts = evaluator.correct_counts(completions, offsets)
  return [metrics_of(sum(counts[i]), sum(evaluator.batch_size(offsets[i] + j) for j in range(len(counts[i]))))
          for i in range(len(trials))]


def metrics_of(correct: int, images: int) -> dict:
  """A trial's metrics from the correct predictions and images of its completions."""
  return {oracle_lib.CORRECT: float(correct), oracle_lib.IMAGES: float(images),
          oracle_lib.POTENTIAL: pool_lib.potential_of(correct, images)}


def trial_metrics(evaluator, values) -> dict:
  """The metrics of one trial (`score_trials`)."""
  return score_trials(evaluator, [values])[0]


# The worker -----------------------------------------------------------------------------------------------

class _Deadline(grpc.UnaryUnaryClientInterceptor):
  """Gives every call of a channel the same deadline, `seconds` (changed as the worker connects)."""

  def __init__(self, seconds):
    self.seconds = seconds

  def intercept_unary_unary(self, continuation, client_call_details, request):
    return continuation(_CallDetails(client_call_details.method, self.seconds,
                                     client_call_details.metadata, client_call_details.credentials,
                                     client_call_details.wait_for_ready,
                                     client_call_details.compression), request)


class _CallDetails(collections.namedtuple(
    "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
  pass


def connect(connect_timeout):
  """keras-tuner's `OracleClient` for the KERASTUNER_* address, with our deadlines; (client, deadline)."""
  deadline = _Deadline(connect_timeout)
  client = oracle_client.OracleClient(None)
  channel = grpc.intercept_channel(grpc.insecure_channel(_env_address()), deadline)
  client.stub = protos.get_service_grpc().OracleStub(channel)
  return client, deadline


class ChiefGone(Exception):
  """The chief stopped answering within the RPC deadline."""


class Worker:
  """Pulls trials from the chief and scores them until the search ends or the chief is gone.

  Args:
    work_dir: the search's work directory (shared with the chief).
    evaluator_factory: () -> `PotentialEvaluator`, called once the chief first answers (by then it has
      written config.json), e.g. `worker_evaluator(read_config(work_dir))`.
    tuner_id: this worker's KERASTUNER_TUNER_ID.
    rpc_timeout: seconds a call may take once the chief has answered.
    connect_timeout: seconds to wait for the chief's first answer (its start may take minutes).
    poll_interval: seconds between asks while the chief trains (no trial to hand out).
    verbose: print a line per trial scored.
  """

  def __init__(self, work_dir, evaluator_factory, tuner_id, rpc_timeout=60.0, connect_timeout=3600.0,
               poll_interval=1.0, verbose=True):
    self.work_dir, self.evaluator_factory, self.tuner_id = work_dir, evaluator_factory, tuner_id
    self.rpc_timeout, self.poll_interval, self.verbose = rpc_timeout, poll_interval, verbose
    self.client, self.deadline = connect(connect_timeout)
    self.evaluator, self.interval, self.scored = None, None, 0

  def run(self):
    """Returns the number of trials this worker scored."""
    try:
      while self._step():
        pass
    except ChiefGone as gone:
      print(f"{self.tuner_id}: the chief at {_env_address()} is gone ({gone}); exiting.", flush=True)
    return self.scored

  def _step(self):
    trial = self._call(self.client.create_trial, self.tuner_id)
    if trial.status == "STOPPED":
      print(f"{self.tuner_id}: the search is finished; scored {self.scored} trials.", flush=True)
      return False
    if trial.status != "RUNNING":
      if self.evaluator is None:  # the chief answers, so config.json is there: prepare while it trains
        self.evaluator = self.evaluator_factory()
      else:
        time.sleep(self.poll_interval)
      return True
    values = trial.hyperparameters.values
    if self.verbose:
      print(f"{self.tuner_id}: scoring trial {trial.trial_id} (mixop {values[oracle_lib.EXTEND] + 1}).",
            flush=True)
    metrics = trial_metrics(self._evaluator_for(values[oracle_lib.EXTEND]), values)
    self._call(oracle_lib.report, self.client, trial, metrics)
    self.scored += 1
    return True

  def _evaluator_for(self, interval):
    if self.evaluator is None:
      self.evaluator = self.evaluator_factory()
    if interval != self.interval:
      load_interval_weights(self.work_dir, interval, self.evaluator.supergraph)
      self.interval = interval
    return self.evaluator

  def _call(self, method, *args):
    try:
      result = method(*args)
    except grpc.RpcError as error:
      if error.code() in _GONE:
        raise ChiefGone(error.code().name) from error
      raise
    self.deadline.seconds = self.rpc_timeout  # the chief answered: later calls get the short deadline
    return result


def worker_evaluator(config):
  """A worker's `PotentialEvaluator`: the search's supergraph (weights loaded per interval) and batches."""
  # pylint: disable=g-import-not-at-top  (TensorFlow: imported by the worker only when it has a trial)
  from pcnas_tf.data import sources as data_sources
  from pcnas_tf.searcher import potential as potential_lib
  from pcnas_tf.searcher import search_config
  from pcnas_tf.space import search_space as space_lib
  from pcnas_tf.nn import supergraph as supergraph_lib
  import keras
  # As in the search: TensorFlow's global seed also decides which images the seeded shuffle of the
  # validation split picks for the fixed batches.
  keras.utils.set_random_seed(config.seed)
  space = space_lib.get_space(config.space, config.width)
  splits = data_sources.load(config.data, min_resolution=space.total_stride)
  search_config.check_splits(config, splits)  # this machine's copy of the data may differ from the chief's
  supergraph = supergraph_lib.Supergraph(space, splits.image_shape, splits.num_classes)
  evaluator = potential_lib.search_evaluator(config, supergraph, splits)
  evaluator.trace_all()  # while the chief trains, so that an interval's time is all scoring
  return evaluator


def read_config(work_dir):
  """The `SearchConfig` the chief wrote to `work_dir`/config.json."""
  from pcnas_tf.searcher import search_config  # pylint: disable=g-import-not-at-top  (TensorFlow)
  path = os.path.join(work_dir, "config.json")
  if not files.exists(path):
    raise errors.UserError(f"{path!r} does not exist; --work_dir must be the chief's work directory, "
                           f"shared with this machine.")
  return search_config.SearchConfig.from_json(files.read_json(path, "search config"))
