"""Local clusters for tests and benchmarks: N worker processes on 127.0.0.1, each with its TF_CONFIG."""

import json
import os
import socket
import subprocess
import time

from pcnas_tf.distribute import cluster


def free_ports(count: int) -> list[int]:
  """`count` distinct TCP ports free on 127.0.0.1 now (the OS picks them)."""
  sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def local_tf_configs(num_workers: int) -> list[dict]:
  """TF_CONFIG of each of `num_workers` workers on 127.0.0.1 (worker 0 is the chief)."""
  addresses = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
  return [{"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
          for i in range(num_workers)]


class LocalCluster:
  """Runs one command as N worker processes on 127.0.0.1, each with its TF_CONFIG; never waits forever.

  Args:
    argv: the command every worker runs.
    num_workers: processes to start.
    log_dir: each worker's stdout and stderr go to `<log_dir>/worker-<i>.log`.
    env: extra environment variables.
  """

  def __init__(self, argv, num_workers: int, log_dir: str, env=None, cwd=None):
    self.argv, self.num_workers, self.log_dir = list(argv), num_workers, log_dir
    self.env, self.cwd = dict(env or {}), cwd
    self.processes = []
    os.makedirs(log_dir, exist_ok=True)

  def log_path(self, index: int) -> str:
    return os.path.join(self.log_dir, f"worker-{index}.log")

  def start(self):
    """Starts every worker with fresh ports (a restarted cluster does not wait for old sockets)."""
    self.processes = []
    for index, config in enumerate(local_tf_configs(self.num_workers)):
      env = {**os.environ, **self.env, cluster.ENV: json.dumps(config)}
      with open(self.log_path(index), "a") as log:
        self.processes.append(subprocess.Popen(self.argv, env=env, cwd=self.cwd, stdout=log,
                                               stderr=subprocess.STDOUT))
    return self

  def wait(self, timeout: float) -> list:
    """Return codes of every worker; those still running after `timeout` seconds are killed (None)."""
    deadline = time.monotonic() + timeout
    codes = []
    for process in self.processes:
      try:
        codes.append(process.wait(timeout=max(0.0, deadline - time.monotonic())))
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        codes.append(None)
    return codes

  def kill(self, index: int) -> None:
    """Kills worker `index` at once (SIGKILL), as a machine failure would."""
    self.processes[index].kill()
    self.processes[index].wait()

  def logs(self, tail: int = 3000) -> str:
    text = []
    for index in range(self.num_workers):
      with open(self.log_path(index), errors="replace") as f:
        text.append(f"--- worker {index} ---\n{f.read()[-tail:]}")
    return "\n".join(text)

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    for process in self.processes:
      if process.poll() is None:
        process.kill()
        process.wait()
