"""How a Kubernetes pod of a service with a ``spec.Handover`` leaves without failing work.

A rolling update (maxUnavailable 0, maxSurge 1: kubernetes.py) starts a new pod and waits for
its readiness probe before it deletes an old one. Deleting a pod starts two things at once
(Kubernetes docs, "Pod Lifecycle: Termination of Pods"): the EndpointSlice controller marks the
pod terminating, which every kube-proxy, gateway and cloud load balancer learns in its own time,
and the kubelet runs the container's ``preStop`` hook, then sends the stop signal, then kills
what is left when ``terminationGracePeriodSeconds`` (counted from the deletion, the hook
included) are over. So the pod must keep serving while its clients drop it, and the grace must
cover that pause and the drain after the signal:

- ``pause`` (``lifecycle.preStop.sleep``): until no client sends new work. For api and web,
  reached by the edge through their ClusterIP Service: the endpoint change reaching every
  kube-proxy (ENDPOINT_PROPAGATION_SECONDS), and then the edge's kept-alive connections, which
  kube-proxy keeps on the old pod (it picks a pod per connection) and the edge reuses at most
  UPSTREAM_KEEPALIVE_TIME_SECONDS (conf/nginx.py). For the edge: its front dropping it, a
  Gateway's controller (ENDPOINT_PROPAGATION_SECONDS) or, behind a LoadBalancer Service with
  externalTrafficPolicy Local, the cloud load balancer's health check of healthCheckNodePort,
  which kube-proxy fails once the node has only terminating edge pods (KEP-1669, Kubernetes
  >= 1.28) and the LB notices after interval x threshold (LOAD_BALANCER_CHECK_SECONDS). A
  service nobody connects to (the worker, no ports) needs no pause: it takes its work from the
  queue and stops taking it on the signal.
- a process that cannot drain (``drains_itself`` False, the api: NestJS without shutdown hooks
  exits on SIGTERM with requests in flight) pauses for its whole drain as well, so the signal
  comes when the last request it accepted is over; one that can (web and edge: nginx, whose
  image's STOPSIGNAL SIGQUIT is a graceful shutdown; the worker: it finishes its jobs on
  SIGTERM) gets the signal after the pause and ``drain_seconds`` to finish.
- grace: pause + the drain after the signal + STOP_MARGIN_SECONDS, never less than the spec's
  own stop_grace_seconds (worker.stopGraceSeconds, whose config rule keeps it above the AI
  timeout).

The stop signal is the image's: Kubernetes' CRI runtimes send the image config's StopSignal when
the pod spec names none (containerd, internal/cri/server/container_stop.go: the container's
StopSignal, taken from the image config at creation, else SIGTERM; the Kubernetes blog
"v1.33: Updates to Container Lifecycle", 2025-05-14, names containerd and CRI-O).
``lifecycle.stopSignal`` would say it in the pod spec, but it is alpha (ContainerStopSignals,
1.33) and needs ``spec.os.name``: not used.

Why ``preStop.sleep`` and not ``exec: [sleep, N]``: the kubelet itself sleeps (KEP-3960), so no
image needs a sleep binary or a shell (an image of one's own, images.*, may have neither), and
nothing runs inside the container. It is on by default from Kubernetes 1.30 (beta; GA in 1.34),
one release above what native sidecars (kubernetes.py, the Redis tunnel) already need (1.29), so
the platform's minimum becomes 1.30; 1.29 left upstream support in February 2025.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulumi_kubernetes.core.v1 import ContainerArgsDict, PodSpecArgsDict

from components.conf.nginx import UPSTREAM_KEEPALIVE_TIME_SECONDS
from components.spec import ServiceSpec

# Deletion to the last kube-proxy (or a Gateway's proxies) no longer sending new connections:
# under a second on a quiet cluster, several seconds on a loaded or large one (kube-proxy syncs
# rules at most once a second by default, a gateway's controller pushes to its proxies after it).
ENDPOINT_PROPAGATION_SECONDS = 10
# A cloud load balancer's health check, interval x threshold, to stop sending to a node (and to
# start sending to a new one): AWS Load Balancer Controller 10 s x 3, GCE's shared node check
# 8 s x 3 = 24 s (its L4 code: "seconds before the LB will steer traffic away"), Azure 5 s x 2.
LOAD_BALANCER_CHECK_SECONDS = 30
# The signal's delivery after the hook, and the process's exit after its drain.
STOP_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class Departure:
    """How one pod of the service leaves: preStop pause, grace period, and how long a new pod
    must have been ready before the rollout counts it available (minReadySeconds)."""

    pause_seconds: int
    grace_seconds: int
    min_ready_seconds: int


def departure(spec: ServiceSpec, *, public: bool, load_balanced: bool) -> Departure | None:
    """The departure of ``spec``'s pods (None without a Handover). ``public``: the edge, reached
    from outside the cluster; ``load_balanced``: through a LoadBalancer Service (else a Gateway)."""
    handover = spec.handover
    if handover is None:
        return None
    if spec.probe is None:
        # Without a readiness probe a pod is ready once started: the rollout would delete an
        # old pod for a new one that does not serve yet.
        raise ValueError(f"{spec.name}: a handover needs a readiness probe (spec.probe)")
    if public:
        unlisted = ENDPOINT_PROPAGATION_SECONDS + (LOAD_BALANCER_CHECK_SECONDS if load_balanced else 0)
    elif spec.ports:
        unlisted = ENDPOINT_PROPAGATION_SECONDS + UPSTREAM_KEEPALIVE_TIME_SECONDS
    else:
        unlisted = 0
    drain = handover.drain_seconds
    pause = unlisted if handover.drains_itself else unlisted + drain
    after_signal = drain if handover.drains_itself else 0
    grace = max(pause + after_signal + STOP_MARGIN_SECONDS, spec.stop_grace_seconds or 0)
    # Behind a LoadBalancer a new edge pod on a node without one gets traffic only once the LB's
    # check admits that node: until then it is not counted, so no old pod leaves before.
    return Departure(pause, grace, LOAD_BALANCER_CHECK_SECONDS if load_balanced else 0)


def apply(departure: Departure, container: ContainerArgsDict, pod: PodSpecArgsDict) -> None:
    """The pause on the service's own container (exporters and native sidecars keep their
    default: sidecars stop after it), the grace on the pod."""
    if departure.pause_seconds:
        container["lifecycle"] = {"pre_stop": {"sleep": {"seconds": departure.pause_seconds}}}
    pod["termination_grace_period_seconds"] = departure.grace_seconds
