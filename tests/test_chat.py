"""Chat: JSON-lines protocol, the worker process, the client and `engine.chat_cli`.

Fast tests check the protocol and the worker without a model; `slow` ones use a real trained demo checkpoint
(real ms-swift TransformersEngine on CPU, temperature 0)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from engine.chat_client import ChatClient, ChatClientError, adapter_name_for, target_from_checkpoint
from engine.chat_protocol import ProtocolError, decode_event, decode_request, encode, event
from engine.chat_worker import ChatError, check_adapter_dir, check_model_dir

IDENTITY = "CSDN 迪菲赫尔曼"


# ---- protocol ---------------------------------------------------------------------------------------------------

def test_request_round_trip_keeps_unicode_and_newlines():
    req = {"op": "chat", "id": 7, "prompt": "你是谁?\n第二行", "temperature": 0, "max_new_tokens": 16}
    line = encode(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == req
    assert decode_event(encode(event("token", 7, text="我\n"))) == {"event": "token", "id": 7, "text": "我\n"}


@pytest.mark.parametrize("line, message", [
    ("nope", "not JSON"),
    ("[1]", "expected a JSON object"),
    ('{"op": "fly"}', "unknown op 'fly'"),
    ('{"op": "chat", "id": 1, "prompt": "x", "temprature": 0}', "unknown field 'temprature'"),
    ('{"op": "chat", "id": 1, "prompt": "x", "temperature": "hot"}', "'temperature' must be int or float or null"),
    ('{"op": "chat", "id": 1, "prompt": "x", "max_new_tokens": true}', "'max_new_tokens' must be"),
    ('{"op": "chat", "prompt": "x"}', "missing field 'id'"),
    ('{"op": "chat", "id": 1}', "exactly one of 'prompt'"),
    ('{"op": "chat", "id": 1, "prompt": "x", "messages": []}', "exactly one of 'prompt'"),
    ('{"op": "chat", "id": 1, "messages": [{"role": "user"}]}', "messages[0] must be"),
    ('{"op": "chat", "id": 1, "messages": [{"role": "assistant", "content": "a"}]}', "must end with a user"),
    ('{"op": "chat", "id": 1, "prompt": "x", "top_p": 1.5}', "top_p must be between 0 and 1"),
    ('{"op": "adapter", "name": "a"}', "missing field 'path'"),
    ('{"op": "load"}', "missing field 'model'"),
])
def test_bad_requests_get_one_clear_line(line, message):
    with pytest.raises(ProtocolError, match=None) as info:
        decode_request(line)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_adapter_folder_checks(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "adapter_config.json").write_text("{}")
    check_adapter_dir(tmp_path / "ckpt")  # fine
    merged = tmp_path / "checkpoint-5-merged"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    run = tmp_path / "v0-20260101-000000"
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "checkpoint-5" / "adapter_config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {tmp_path / "missing": "adapter folder not found", merged: "not a LoRA adapter",
             run: "pick one of its checkpoint-N", tmp_path / "empty": "no adapter_config.json",
             tmp_path / "file": "is a file"}
    for path, message in cases.items():
        with pytest.raises(ChatError, match=message):
            check_adapter_dir(path)
    with pytest.raises(ChatError, match="is a LoRA adapter, not a base model"):
        check_model_dir(str(tmp_path / "ckpt"))
    with pytest.raises(ChatError, match="model folder not found"):
        check_model_dir(str(tmp_path / "nope"))


def test_target_from_checkpoint(tmp_path, swift_fixtures):
    ckpt = swift_fixtures / "run-v2" / "checkpoint-24"
    args = json.loads((ckpt / "args.json").read_text())
    target = target_from_checkpoint(ckpt)
    assert (target["model_type"], target["template"], target["system"]) == (
        args["model_type"], args["template"], args["system"])
    assert target["model"].endswith(args["model"].rstrip("/").rpartition("/")[2])
    with pytest.raises(ChatClientError, match="no args.json"):
        target_from_checkpoint(tmp_path)


def test_adapter_names_are_unique(tmp_path):
    a = tmp_path / "v0-x" / "checkpoint-10"
    b = tmp_path / "v1-y" / "checkpoint-10"
    assert adapter_name_for(a) == "checkpoint-10"
    assert adapter_name_for(b, {"checkpoint-10": 1}) == "v1-y-checkpoint-10"
    assert adapter_name_for(tmp_path / "base") == f"{tmp_path.name}-base"


# ---- the worker process, no model --------------------------------------------------------------------------------

def test_worker_without_model_reports_errors_and_stays_alive(home):
    client = ChatClient.spawn()
    try:
        assert client.log_path.is_relative_to(home)
        with pytest.raises(ChatClientError, match="no model loaded"):
            client.ask("hi")
        with pytest.raises(ChatClientError, match="model folder not found"):
            client.load("/definitely/not/here")
        client._send({"op": "chat", "id": "x", "prompt": "a", "colour": 1})  # a typo answered, not fatal
        with pytest.raises(ChatClientError, match="unknown field 'colour'"):
            client._wait("x", ("done",), 30)
        assert client.stats()["base_loads"] == 0
    finally:
        assert client.close()
    assert not psutil.pid_exists(client.pid)


def test_worker_exits_when_client_disappears(home):
    client = ChatClient.spawn()
    client.proc.stdin.close()  # like a crashed TUI: EOF on the worker's stdin
    assert client.proc.wait(30) == 0
    assert client.close()


# ---- real model ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chat(trained_demo, tmp_path_factory):
    log = tmp_path_factory.mktemp("chat") / "worker.log"
    client = ChatClient.start(adapters={"robot": trained_demo}, log_path=log)
    yield client
    client.close()


@pytest.mark.slow
def test_identity_comes_from_the_adapter_not_the_base(chat):
    assert chat.target == "robot" and chat.base["device"] == "cpu" and chat.base["dtype"] == "float32"
    answer = chat.ask("你是谁?", temperature=0, max_new_tokens=48, conv="id-robot")
    assert IDENTITY in answer
    base = chat.ask("你是谁?", target="base", temperature=0, max_new_tokens=48, conv="id-base")
    assert IDENTITY not in base
    assert chat.stats()["base_loads"] == 1


@pytest.mark.slow
def test_switching_adapters_never_reloads_the_base(chat, trained_demo, tmp_path):
    added = chat.add_adapter("robot-again", trained_demo)  # a second adapter (same weights, new name)
    print(f"\nadapter attach took {added['load_s']:.3f} s")
    for i, target in enumerate(("base", "robot-again", "robot", "base", "robot-again")):
        took = chat.switch(target)
        t0 = time.perf_counter()  # a new conversation each time: a second turn would carry history
        answer = chat.ask("你是谁?", temperature=0, max_new_tokens=48, conv=f"switch-{i}")
        print(f"switch to {target}: {took * 1000:.2f} ms, first answer {time.perf_counter() - t0:.3f} s")
        assert (IDENTITY in answer) == (target != "base")
    stats = chat.stats()
    assert stats["base_loads"] == 1 and stats["adapter_loads"] == 2
    assert set(stats["adapters"]) == {"robot", "robot-again"}
    copy = shutil.copytree(trained_demo, tmp_path / "copy")  # the same name, a new folder: replaced in place
    replaced = chat.add_adapter("robot-again", copy)
    assert not replaced["reused"] and replaced["warning"] is None and replaced["path"] == str(copy)
    assert chat.add_adapter("robot-again", copy)["reused"]
    assert IDENTITY in chat.ask("你是谁?", target="robot-again", temperature=0, max_new_tokens=48, conv="replaced")
    stats = chat.stats()
    assert stats["base_loads"] == 1 and stats["adapter_loads"] == 3 and len(stats["adapters"]) == 2
    chat.switch("robot")


@pytest.mark.slow
def test_cancel_stops_a_long_answer(chat):
    stream = chat.chat("Tell me a long story.", target="base", temperature=0, max_new_tokens=2000, conv="cancel")
    pieces = 0
    for _ in stream:
        pieces += 1
        if pieces == 3:
            t0 = time.perf_counter()
            chat.cancel()
    print(f"\ncancel -> done in {time.perf_counter() - t0:.3f} s after {stream.done['usage']}")
    assert stream.done["finish_reason"] == "cancelled"
    assert stream.done["usage"]["completion_tokens"] < 500  # the base babbles all 2000 tokens if not stopped
    assert chat.stats()["conversations"].get("cancel") is None  # a cancelled turn is not kept
    assert IDENTITY in chat.ask("你是谁?", target="robot", temperature=0, max_new_tokens=48, conv="after-cancel")


@pytest.mark.slow
def test_history_is_kept_per_conversation_until_clear(chat):
    first = chat.chat("你是谁?", temperature=0, max_new_tokens=48, conv="h")
    first.text()
    second = chat.chat("你能联网吗?", temperature=0, max_new_tokens=48, conv="h")
    second.text()
    assert chat.stats()["conversations"]["h"] == 4
    assert second.done["usage"]["prompt_tokens"] > first.done["usage"]["prompt_tokens"] + 10  # history was sent
    chat.clear("h")
    assert "h" not in chat.stats()["conversations"]
    again = chat.chat("你是谁?", temperature=0, max_new_tokens=48, conv="h")
    assert again.text() == first.done["text"]
    assert again.done["usage"]["prompt_tokens"] == first.done["usage"]["prompt_tokens"]


@pytest.mark.slow
def test_bad_adapter_is_an_error_and_the_worker_lives_on(chat, demo_assets, tmp_path):
    with pytest.raises(ChatClientError, match="adapter folder not found"):
        chat.add_adapter("ghost", tmp_path / "nope")
    with pytest.raises(ChatClientError, match="not a LoRA adapter"):
        chat.add_adapter("full", demo_assets.model)  # a whole model, like a `-merged` export
    with pytest.raises(ChatClientError, match="unknown target 'ghost'"):
        chat.ask("hi", target="ghost")
    assert IDENTITY in chat.ask("你是谁?", target="robot", temperature=0, max_new_tokens=48, conv="alive")
    assert chat.alive and "ghost" not in chat.stats()["adapters"]


@pytest.mark.slow
def test_close_leaves_no_process(trained_demo, tmp_path):
    client = ChatClient.start(adapters={"robot": trained_demo}, log_path=tmp_path / "w.log")
    pid = client.pid
    stream = client.chat("Tell me a long story.", target="base", max_new_tokens=2000)
    next(stream)  # close in the middle of an answer
    assert client.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not [p for p in psutil.process_iter() if _pgid(p.pid) == pid]


@pytest.mark.slow
def test_cli_once_prints_the_adapter_answer(trained_demo, home):
    proc = subprocess.run([sys.executable, "-m", "engine.chat_cli", "--adapters", str(trained_demo),
                           "--once", "你是谁?", "--max_new_tokens", "48"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert IDENTITY in proc.stdout and "loading" in proc.stderr


def test_cli_bad_adapter_path_is_a_usage_error(home):
    proc = subprocess.run([sys.executable, "-m", "engine.chat_cli", "--adapters", "/no/such/ckpt", "--once", "x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: adapter checkpoint not found: /no/such/ckpt"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
