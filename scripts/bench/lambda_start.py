"""Start-up of a Lambda function binary, measured locally: a minimal Lambda Runtime API
(the HTTP interface the Lambda service gives a custom runtime) hands the binary one
API Gateway event; the time from spawning the process to the response it posts is the
cold start a user would wait for, minus the service's own sandbox set-up. The function's
AWS calls go to the AWS emulator (moto_server), started here with the table it needs.

usage: python lambda_start.py BINARY EVENT_JSON [RUNS]
Prints one line per run and the median, in milliseconds.
"""
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """GET .../invocation/next once with the event; POST .../response records the answer."""

    event = b""
    served = threading.Event()
    answered = threading.Event()
    answer = b""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/invocation/next") and not RuntimeApi.served.is_set():
            RuntimeApi.served.set()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:sign")
            self.send_header("Content-Length", str(len(RuntimeApi.event)))
            self.end_headers()
            self.wfile.write(RuntimeApi.event)
        else:
            # The next invocation never comes: the run is over.
            time.sleep(30)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        RuntimeApi.answer = body
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        RuntimeApi.answered.set()


def main():
    binary, event_path = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    RuntimeApi.event = open(event_path, "rb").read()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    moto_port = free_port()
    moto = subprocess.Popen(
        [os.path.join(root, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/data.json")
            break
        except Exception:
            time.sleep(0.1)
    import boto3
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_table(
        TableName="intents", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_SESSION_TOKEN="token", AIRLOCK_BUCKET="uploads", AIRLOCK_TABLE="intents",
               AWS_LAMBDA_FUNCTION_NAME="sign", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
               AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_LOG_LEVEL="error")
    times = []
    try:
        for run in range(runs):
            port = free_port()
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), RuntimeApi)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            RuntimeApi.served.clear()
            RuntimeApi.answered.clear()
            started = time.perf_counter()
            proc = subprocess.Popen([binary], env=dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if not RuntimeApi.answered.wait(30):
                proc.kill()
                sys.exit("no answer within 30 s: " + proc.stderr.read().decode(errors="replace")[-2000:])
            elapsed = (time.perf_counter() - started) * 1000
            proc.kill()
            proc.wait()
            server.shutdown()
            status = json.loads(RuntimeApi.answer).get("statusCode")
            times.append(elapsed)
            print(f"run {run + 1}: {elapsed:.1f} ms to the first response (status {status})")
    finally:
        moto.kill()
    print(f"median {statistics.median(times):.1f} ms over {runs} runs "
          f"(binary {os.path.getsize(binary) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
