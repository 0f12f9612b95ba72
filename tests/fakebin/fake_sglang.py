#!/usr/bin/env python3
"""Stand-in SGLang server for supervisor tests (stdlib only, starts in ~50 ms).

Answers /health, /health_generate, /v1/models, /server_info (with its own argv, pid and any
--echo-env variables), /flush_cache. Options to misbehave: --ignore-sigterm, --spawn-child
(a sleeping child in the same process group; --child-ignores-sigterm), --health-delay S (503 for the first S seconds).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--model", default="deepseek-ai/DeepSeek-V4-Pro")
p.add_argument("--echo-env", action="append", default=[])
p.add_argument("--ignore-sigterm", action="store_true")
p.add_argument("--spawn-child", action="store_true")
p.add_argument("--child-ignores-sigterm", action="store_true")
p.add_argument("--health-delay", type=float, default=0.0)
args, extra = p.parse_known_args()
started = time.monotonic()

if args.ignore_sigterm:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = None
if args.spawn_child:
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if args.child_ignores_sigterm else ""
    child = subprocess.Popen([sys.executable, "-c", f"import signal, time; {ignore}time.sleep(600)"])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *a):  # one line per request on stdout, like a server log
        print("request: " + fmt % a, flush=True)

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/health", "/health_generate"):
            if time.monotonic() - started < args.health_delay:
                return self._json(503, {"error": "loading"})
            return self._json(200, {})
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": args.model, "object": "model"}]})
        if self.path in ("/server_info", "/get_server_info"):
            return self._json(
                200,
                {
                    "model_path": args.model,
                    "port": args.port,
                    "argv": sys.argv[1:],
                    "extra": extra,
                    "pid": os.getpid(),
                    "child_pid": child.pid if child else None,
                    "env": {k: os.environ.get(k) for k in args.echo_env},
                    "version": "fake",
                },
            )
        return self._json(404, {"error": "not found"})

    def do_POST(self):
        if self.path == "/flush_cache":
            return self._json(200, {"flushed": True})
        return self._json(404, {"error": "not found"})


server = ThreadingHTTPServer((args.host, args.port), Handler)
print(f"fake sglang listening on {args.host}:{args.port} pid {os.getpid()}", flush=True)
print("The server is fired up and ready to roll!", flush=True)
server.serve_forever()
