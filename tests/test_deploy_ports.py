"""Deploy ports (issue 14 item 12): two deploys started at once must not both get one port. The registry of active
deploys is the reservation; a real listener is skipped; two real `swift deploy` of the demo model started together
both come up."""
from __future__ import annotations

import socket
import threading

import psutil
import pytest

from engine import deploy, runs, supervisor


def _free_base(span: int = 6) -> int:
    """A port P with P..P+span-1 all free right now (so the test does not depend on what else runs here)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + span < 65535 and all(deploy._bindable("127.0.0.1", p) and deploy._bindable("", p)
                                       for p in range(base, base + span)):
            return base
    pytest.skip("no run of free ports")


def _active_deploy(tmp_path, port: int) -> runs.RunRecord:
    """A registry record of a deploy started with --port `port` whose runner is alive (this test process), as a
    deploy still loading its model is: nothing listens on the port yet."""
    rec = runs.create("deploy", ["swift", "deploy", "--model", "m", "--port", str(port)], str(tmp_path))
    me = psutil.Process()
    return runs.update(rec.id, lambda r: (setattr(r, "status", "running"), setattr(r, "runner_pid", me.pid),
                                          setattr(r, "runner_create_time", me.create_time())))


def test_a_port_of_an_active_deploy_is_not_chosen_again(home, tmp_path):
    base = _free_base()
    rec = _active_deploy(tmp_path, base)
    assert deploy.reserved_ports() == {base: rec.id}
    assert deploy.free_port(start=base, taken=set(deploy.reserved_ports())) == base + 1
    with socket.socket() as busy:  # a real listener on the next one
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        assert deploy.free_port(start=base, taken=set(deploy.reserved_ports())) == base + 2
    runs.update(rec.id, lambda r: r.meta.update(port=base + 3))
    assert set(deploy.reserved_ports()) == {base, base + 3}  # the port it reported counts too
    runs.update(rec.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0)))
    assert deploy.reserved_ports() == {} and deploy.free_port(start=base) == base  # an ended deploy frees it


@pytest.mark.slow
def test_two_deploys_started_at_once_both_come_up(home, tmp_path, demo_assets):
    """Two real `swift deploy` of the demo model asked for the same port at the same moment: both must be
    served, on different ports (before, both got the port and the second died 'address already in use')."""
    base = _free_base()
    extra = ["--model_type", "qwen2", "--template", "qwen2_5", "--torch_dtype", "float32"]
    started: list[runs.RunRecord] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            started.append(deploy.start({}, model=str(demo_assets.model), extra=extra, port=base, cwd=tmp_path))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(started) == 2, errors
    try:
        urls = [deploy.wait_ready(rec, timeout_s=600) for rec in started]
        assert len(set(urls)) == 2 and all(deploy.health(u) for u in urls), urls
        asked = sorted(int(r.argv[r.argv.index("--port") + 1]) for r in started)
        assert asked == [base, base + 1]
        moved = next(r for r in started if int(r.argv[r.argv.index("--port") + 1]) == base + 1)
        assert f"port {base} is used by deploy run" in " ".join(moved.notes)
    finally:
        for rec in started:
            supervisor.stop(runs.load(rec.id), force=True)
