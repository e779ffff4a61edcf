#!/usr/bin/env python3
"""make bench-pipeline: MEETINGS meetings (default 20), each an MP4 of MEDIA_MIB MiB (default 500),
its M4A (a quarter of that) and a transcript, from the simulator through `zoom-relay run` (ingress,
plan, download, assemble, upload, cleanup off) to a local destination. Then, in the same run, curl
fetches the same files from the simulator to the same disk with the same parallelism as the
download stage. Prints end-to-end MB/s, time from first event to last file uploaded, the ratio to
curl, and the pipeline's peak RSS."""
import hashlib, hmac, json, os, pathlib, shutil, subprocess, sys, time, urllib.request

root = pathlib.Path(__file__).resolve().parent.parent
work = root / "target" / "bench-pipeline"
bin_ = root / "target" / "release" / "zoom-relay"
meetings = int(os.environ.get("MEETINGS", "20"))
media = int(os.environ.get("MEDIA_MIB", "500")) * 1024 * 1024
parallel = 4
namespace = f"benchpipe{int(time.time())}."
sim, ingress = "http://127.0.0.1:19393", "http://127.0.0.1:18383"
secret = "bench-secret"

shutil.rmtree(work, ignore_errors=True)
(work / "curl").mkdir(parents=True)
config = work / "zoom-relay.toml"
config.write_text(f"""
[amqp]
namespace = "{namespace}"
[ingress]
listen = "127.0.0.1:18383"
[sim]
listen = "127.0.0.1:19393"
[zoom]
oauth_url = "{sim}/oauth/token"
api_base = "{sim}/v2"
download_hosts = ["127.0.0.1"]
[pipeline]
staging = "file://{work}/staging"
download = {{ concurrency = {parallel}, prefetch = {parallel} }}
[log]
level = "warn"
[[accounts]]
name = "bench"
account_id = "bench-account"
client_id = "bench-client"
client_secret = "bench-client-secret"
secret_tokens = ["{secret}"]
destination = "file://{work}/recordings"
""")

def request(url, body=None, headers=None, method=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(req) as response:
        return response.read()

def wait_http(url):
    for _ in range(200):
        try:
            request(url)
            return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"{url} did not answer")

processes = []
try:
    processes.append(subprocess.Popen([bin_, "--config", config, "sim"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    relay = subprocess.Popen([bin_, "--config", config, "run"], stdout=open(work / "run.log", "w"), stderr=subprocess.STDOUT)
    processes.append(relay)
    wait_http(f"{sim}/_sim/stats")
    wait_http(f"{ingress}/readyz")

    spec = {"segments": 1, "views": ["shared_screen_with_speaker_view"], "audio": True, "chat": False,
            "transcript": True, "transcript_later": False, "media_size": media}
    created = [json.loads(request(f"{sim}/_sim/meetings", spec, {"content-type": "application/json"})) for _ in range(meetings)]
    total = sum(f["size"] for c in created for f in c["files"].values())

    started = time.monotonic()
    for meeting in created:
        body = json.dumps(meeting["recording_completed"]).encode()
        ts = str(int(time.time()))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        request(f"{ingress}/zoom/webhook", body, {"content-type": "application/json",
                "x-zm-request-timestamp": ts, "x-zm-signature": signature})
    while len(list((work / "recordings").rglob("meeting.json"))) < meetings:
        if relay.poll() is not None:
            sys.exit("zoom-relay run exited; see target/bench-pipeline/run.log")
        time.sleep(0.05)
    pipeline_seconds = time.monotonic() - started
    peak_rss = next(int(line.split()[1]) for line in open(f"/proc/{relay.pid}/status") if line.startswith("VmHWM"))
    for manifest in (work / "recordings").rglob("meeting.json"):
        for entry in json.load(open(manifest))["segments"][0]["files"]:
            assert entry["sha256"] == next(c["files"][entry["file_id"]]["sha256"] for c in created if entry["file_id"] in c["files"])
    shutil.rmtree(work / "recordings")

    token = json.loads(request(f"{sim}/oauth/token?grant_type=account_credentials&account_id=bench-account", b"",
        {"authorization": "Basic " + __import__("base64").b64encode(b"bench-client:bench-client-secret").decode()}))["access_token"]
    lines = []
    for index, meeting in enumerate(created):
        for file in meeting["recording_completed"]["payload"]["object"]["recording_files"]:
            lines.append(f'url = "{file["download_url"]}"\noutput = "{work}/curl/{index}-{file["id"]}"\n')
    (work / "curl.cfg").write_text("".join(lines))
    started = time.monotonic()
    subprocess.run(["curl", "-sS", "--no-progress-meter", "-L", "-Z", "--parallel-max", str(parallel), "-H", f"Authorization: Bearer {token}",
                    "-K", work / "curl.cfg"], check=True)
    curl_seconds = time.monotonic() - started
    fetched = sum(p.stat().st_size for p in (work / "curl").iterdir())
    assert fetched == total, (fetched, total)

    mb = total / 1048576
    print(f"bytes                 {total} ({mb:.0f} MiB in {meetings} meetings, {len(lines)} files)")
    print(f"pipeline              {mb / pipeline_seconds:8.1f} MB/s   first event -> last file uploaded {pipeline_seconds:6.1f} s")
    print(f"curl (same files, -Z {parallel}) {mb / curl_seconds:8.1f} MB/s   {curl_seconds:6.1f} s")
    print(f"pipeline / curl       {curl_seconds / pipeline_seconds:8.2f}")
    print(f"peak RSS (zoom-relay run) {peak_rss / 1024:.1f} MiB")
finally:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)
    shutil.rmtree(work / "curl", ignore_errors=True)
    shutil.rmtree(work / "recordings", ignore_errors=True)
    shutil.rmtree(work / "staging", ignore_errors=True)
    names = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True).stdout.split()
    for name in names:
        if name.startswith(namespace):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", name], capture_output=True)
