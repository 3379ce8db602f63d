"""LLM judge against a local OpenAI-compatible stub server on 127.0.0.1."""

import json
import pickle
import socket
import threading
import time
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
    with pytest.raises(RuntimeError, match="HTTP 500 for example 0"):
        _judge(url, retries=0).score(["q"], ["an answer"], [[]])
    # A client error is not retried: one request, the status and body in the message.
    handler.requests, handler.replies = [], [(400, {"error": "bad request"})]
    with pytest.raises(RuntimeError, match="HTTP 400 for example 0.*bad request"):
        _judge(url, retries=2).score(["q"], ["an answer"], [[]])
    assert len(handler.requests) == 1


def test_transient_503s_are_retried_with_backoff_then_scored(server):
    url, handler = server
    handler.replies = [(503, {"error": "overloaded"}), (503, {"error": "overloaded"}), _chat("8")]
    started = time.perf_counter()
    scores = _judge(url, retries=2, backoff_s=0.1).score(["q"], ["an answer"], [[]])
    elapsed = time.perf_counter() - started
    assert scores.tolist() == [pytest.approx(7 / 9)]
    assert len(handler.requests) == 3  # two failures, then the answer
    assert elapsed >= 0.2  # urllib3 backoff: no sleep before retry 1, 0.1 x 2 before retry 2


def test_503s_beyond_the_retries_are_one_clear_error(server):
    url, handler = server
    handler.replies = [(503, {"error": "overloaded"})] * 3
    with pytest.raises(RuntimeError, match=r"answered HTTP 503 after 2 retries for example 0"):
        _judge(url, retries=2, backoff_s=0.0).score(["q"], ["an answer"], [[]])
    assert len(handler.requests) == 3


def test_a_server_that_never_answers_times_out_and_is_named():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nothing ever reads or replies
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        started = time.perf_counter()
        with pytest.raises(RuntimeError, match=rf"cannot reach {url}/v1/chat/completions \(example 0\) after 1 retries"):
            _judge(url, timeout_s=0.3, retries=1, backoff_s=0.0).score(["q"], ["an answer"], [[]])
        elapsed = time.perf_counter() - started
    finally:
        silent.close()
    assert 0.55 <= elapsed < 5  # two attempts of 0.3 s each, then the error


def test_unreachable_server_and_missing_params():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused, retried, then one error
    with pytest.raises(RuntimeError, match=rf"cannot reach http://127.0.0.1:{port}/v1/chat/completions .*after 2 retries"):
        _judge(f"http://127.0.0.1:{port}", timeout_s=2, backoff_s=0.01).score(["q"], ["an answer"], [[]])
    with pytest.raises(ValueError, match="missing required params"):
        build_judge(JudgeRef(name="llm", params={"url": "http://x"}))
    with pytest.raises(ValueError, match="retries and backoff_s must be >= 0"):
        _judge("http://x", retries=-1)


def test_judge_survives_pickling_after_use(server):
    url, handler = server
    handler.replies = [_chat("5"), _chat("6")]
    judge = _judge(url)
    judge.score(["q"], ["an answer"], [[]])
    clone = pickle.loads(pickle.dumps(judge))
    assert clone.score(["q"], ["an answer"], [[]]).tolist() == [pytest.approx(5 / 9)]
