"""Ray Serve scale-out: the same app (routes, errors, admission, metrics) on N replicas behind Ray's HTTP proxy.

    janus-rt serve --model DIR --ray --replicas 2            # one command: a local Ray, N replicas, port 8000

Each replica is a Ray actor that loads the model itself (one GPU each: `num_gpus=1`; on a machine without
one, CPU replicas of `cpu_per_replica` cores, torch limited to as many threads) and serves `build_app`'s
FastAPI app through `serve.ingress`, so a request meets exactly the checks, errors and engine of
`janus-rt serve`; concurrent requests on one replica share its decode steps. Ray routes each request to a
replica with the fewest requests in flight; each answer names its replica in `x-janus-rt-replica`. Ray is told to pass requests through (`max_ongoing_requests`
above the app's own queue bound), so overload is answered by the app's 429 + Retry-After, not queued
unseen in the proxy. A replica whose engine loop died fails Ray's health check and is replaced.
/health and /metrics answer for the replica that serves them (Ray's proxy has its own `/-/healthz`).

As a `serve run` target, `serve_application(model_args, settings, plan, load_model)` gives the Application; the CLI
builds `model_args` from the same flags as `janus-rt serve` and passes its own loader `load_model(model_args)`
(both are sent to every replica, which loads the model with them): the server never imports the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

from janus_rt.errors import InputError
from janus_rt.serve import build_app
from janus_rt.serve.settings import ServeSettings

APP_NAME = "janus-rt"
PASS_THROUGH_REQUESTS = 1024  # requests Ray lets into one replica beyond its queue bound (the app admits or 429s)

LoadModel = Callable[[argparse.Namespace], Any]  # model flags -> a loaded `janus_rt.Janus` (the CLI's `load_model`)


def require_ray_extra() -> None:
    """Raise InputError saying how to install Ray Serve when it is missing."""
    try:
        importlib.import_module("ray.serve")
    except ImportError as e:
        raise InputError(f"--ray needs Ray Serve, which is not installed ({e}): pip install 'janus-rt[ray]'") from None


@dataclass(frozen=True)
class ReplicaPlan:
    """Where the replicas run and what each asks Ray for."""

    replicas: int
    gpu: bool  # one GPU per replica; else CPU replicas
    cpu_per_replica: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise InputError(f"--replicas must be an integer >= 1, got {self.replicas!r}", param="replicas")
        if not isinstance(self.cpu_per_replica, int) or self.cpu_per_replica < 1:
            raise InputError(f"--cpu-per-replica must be an integer >= 1, got {self.cpu_per_replica!r}",
                             param="cpu_per_replica")

    def actor_options(self) -> dict[str, Any]:
        if self.gpu:
            return {"num_gpus": 1, "num_cpus": self.cpu_per_replica}
        return {"num_gpus": 0, "num_cpus": self.cpu_per_replica}


def replica_model_args(args: argparse.Namespace, gpu: bool) -> argparse.Namespace:
    """The model flags a replica loads with: each replica sees its one GPU as `cuda` (Ray sets the visible device)."""
    device = args.device
    if gpu and (device is None or str(device).startswith("cuda")):
        device = "cuda"
    elif not gpu and device is None:
        device = "cpu"
    return argparse.Namespace(**{**vars(args), "device": device})


class ReplicaApp:
    """ASGI wrapper of one replica's app: every answer names the replica (`x-janus-rt-replica`), and the
    lifespan protocol is answered here, closing the replica's model at shutdown."""

    def __init__(self, app: Callable, model: Any, replica_id: str):
        self.app = app
        self.model = model
        self.replica_header = (b"x-janus-rt-replica", replica_id.encode())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            async def named_send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), self.replica_header]}
                await send(message)

            await self.app(scope, receive, named_send)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.model.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def serve_application(model_args: argparse.Namespace, settings: ServeSettings, plan: ReplicaPlan,
                      load_model: LoadModel) -> Any:
    """The Ray Serve Application: `plan.replicas` replicas of `build_app` over `load_model(model_args)`."""
    from ray import serve

    def build_replica_app() -> ReplicaApp:  # runs on each replica when it starts
        if not plan.gpu:
            import torch

            torch.set_num_threads(plan.cpu_per_replica)  # replicas share the machine's cores
        model = load_model(model_args)
        if getattr(model_args, "warmup", False):
            model.warmup()
        replica_id = serve.get_replica_context().replica_id.unique_id
        return ReplicaApp(build_app(model, settings), model, replica_id)

    @serve.ingress(build_replica_app)
    class JanusReplica:
        """One model and its engine; Ray restarts the replica when its engine loop has died."""

        def check_health(self) -> None:
            model = self.app.model  # noqa: F821 - `app` comes from Ray's ASGI wrapper
            if not model.engine.alive:
                raise RuntimeError(f"the janus-rt engine is down: {model.engine.health()['error']}")

    deployment = serve.deployment(
        JanusReplica, name="JanusReplica", num_replicas=plan.replicas, ray_actor_options=plan.actor_options(),
        max_ongoing_requests=settings.max_queue + PASS_THROUGH_REQUESTS,
        graceful_shutdown_timeout_s=settings.grace_period_s, health_check_period_s=5)
    return deployment.bind()


def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_ray_serve(args: argparse.Namespace, settings: ServeSettings, load_model: LoadModel) -> int:
    """`janus-rt serve --ray`: start (or join) Ray, deploy the replicas (each loads `load_model(args)`, `args` with its
    device), serve until SIGTERM / Ctrl-C, exit 0."""
    require_ray_extra()
    import ray
    from ray import serve

    gpu = _wants_gpu(args.device)
    plan = ReplicaPlan(args.replicas, gpu, args.cpu_per_replica)
    model_args = replica_model_args(args, gpu)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats report from a local Ray
    ray.init(address=args.ray_address, include_dashboard=False, logging_level="WARNING",
             log_to_driver=True, configure_logging=True)
    try:
        print(f"ray          {plan.replicas} replica(s), {'1 GPU' if gpu else f'{plan.cpu_per_replica} CPU'} each; "
              "loading the model on every replica...", file=sys.stderr, flush=True)
        serve.start(http_options={"host": settings.host, "port": settings.port})
        try:
            serve.run(serve_application(model_args, settings, plan, load_model), name=APP_NAME, route_prefix="/")
        except Exception as e:  # noqa: BLE001 - a replica failed to start (bad checkpoint, device, memory)
            raise InputError(f"the Ray replicas did not start: {type(e).__name__}: {_last_line(e)}") from None
        print(f"serving      {settings.model_name} on http://{settings.host}:{settings.port} through Ray Serve "
              f"(auth: {'Bearer key' if settings.api_key else 'none'}; stop with Ctrl-C or SIGTERM)",
              file=sys.stderr, flush=True)
        wait_for_signal()
        print("stopping     draining in-flight requests...", file=sys.stderr, flush=True)
        serve.delete(APP_NAME)  # replicas finish what they run (up to the grace period); the proxy still answers
        serve.shutdown()
    finally:
        ray.shutdown()
    print("stopped      in-flight requests finished", file=sys.stderr)
    return 0


def _wants_gpu(device: str | None) -> bool:
    if device is not None:
        return str(device).startswith("cuda")
    import torch

    return torch.cuda.is_available()


def _last_line(error: BaseException) -> str:
    """The last line of an error's text (Ray wraps a replica's failure; its cause comes last)."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__
