"""LLM judge against a local OpenAI-compatible stub server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from paretoflow.config import JudgeRef
from paretoflow.judges import build_judge
from paretoflow.judges.llm import parse_score


class _Handler(BaseHTTPRequestHandler):
    replies: list = []
    requests: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body, self.headers.get("Authorization")))
        status, payload = type(self).replies.pop(0)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.replies, _Handler.requests = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _chat(content):
    return 200, {"choices": [{"message": {"role": "assistant", "content": content}}]}


def _judge(url, **extra):
    params = {"url": url, "model": "judge-model", "rubric": "Is the answer helpful?", "timeout_s": 5, **extra}
    return build_judge(JudgeRef(name="llm", params=params))


def test_parse_score():
    assert parse_score("Score: 7/10") == 7
    assert parse_score("10") == 10
    assert parse_score("I give it 3.") == 3
    assert parse_score("2.5 out of ten") is None
    assert parse_score("great answer") is None


def test_scores_map_one_to_ten_onto_unit_interval(server, monkeypatch):
    url, handler = server
    handler.replies = [_chat("10"), _chat("Score: 1")]
    monkeypatch.setenv("JUDGE_KEY_TEST", "secret")
    scores = _judge(url, api_key_env="JUDGE_KEY_TEST").score(["q1", "q2"], ["good answer", "bad answer"], [[], []])
    assert scores.tolist() == [1.0, 0.0]
    path, body, auth = handler.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "judge-model" and auth == "Bearer secret"
    assert "Is the answer helpful?" in body["messages"][0]["content"]
    assert "good answer" in body["messages"][1]["content"]


def test_empty_response_scores_zero_without_a_request(server):
    url, handler = server
    assert _judge(url).score(["q"], ["  "], [[]]).tolist() == [0.0]
    assert handler.requests == []


def test_malformed_replies_raise_clear_errors(server):
    url, handler = server
    handler.replies = [_chat("excellent, no notes")]
    with pytest.raises(ValueError, match="example 0 holds no score"):
        _judge(url).score(["q"], ["an answer"], [[]])
    handler.replies = [(200, b"not json")]
    with pytest.raises(ValueError, match="malformed reply"):
        _judge(url).score(["q"], ["an answer"], [[]])
    handler.replies = [(500, {"error": "boom"})]
    with pytest.raises(RuntimeError, match="HTTP 500"):
        _judge(url).score(["q"], ["an answer"], [[]])


def test_unreachable_server_and_missing_params():
    with pytest.raises(RuntimeError, match="cannot reach"):
        _judge("http://127.0.0.1:9", timeout_s=2).score(["q"], ["an answer"], [[]])
    with pytest.raises(ValueError, match="missing required params"):
        build_judge(JudgeRef(name="llm", params={"url": "http://x"}))
