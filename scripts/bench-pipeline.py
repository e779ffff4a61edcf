#!/usr/bin/env python3
"""make bench-pipeline: MEETINGS meetings (default 20), each an MP4 of MEDIA_MIB MiB (default 500),
its M4A (a quarter of that), a transcript and PARTICIPANT_AUDIO per-participant M4As (default 0),
from the simulator through zoom-relay (ingress, plan, download, assemble, upload, cleanup off) to a
local destination. WORKERS=0 (default) runs it all in one `zoom-relay run`; WORKERS=N runs each
component as its own process, with N `zoom-relay download` processes. Then, in the same run, curl
fetches the same files from the simulator to the same disk with the same parallelism as one
download process. Prints end-to-end MB/s, time from first event to last manifest, the ratio to
curl, CPU seconds per GiB (every zoom-relay process, and curl), peak RSS of each process, and the
Zoom API and file requests per file. RATE_MBPS caps what the simulator serves each connection for
an MP4 (a slow link to Zoom); RANGES sets `pipeline.download_ranges` (connections per large file)."""
import hashlib, hmac, json, os, pathlib, resource, shutil, subprocess, sys, time, urllib.request

root = pathlib.Path(__file__).resolve().parent.parent
work = root / "target" / "bench-pipeline"
bin_ = root / "target" / "release" / "zoom-relay"
meetings = int(os.environ.get("MEETINGS", "20"))
media = int(float(os.environ.get("MEDIA_MIB", "500")) * 1024 * 1024)
participant_audio = int(os.environ.get("PARTICIPANT_AUDIO", "0"))
workers = int(os.environ.get("WORKERS", "0"))
rate_mbps = float(os.environ.get("RATE_MBPS", "0"))
ranges = int(os.environ.get("RANGES", "1"))
parallel = 4
ticks = os.sysconf("SC_CLK_TCK")
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
# A meeting of a few hundred files makes a body of a few hundred KiB, as Zoom's would be.
max_body_bytes = 4194304
[sim]
listen = "127.0.0.1:19393"
[zoom]
oauth_url = "{sim}/oauth/token"
api_base = "{sim}/v2"
download_hosts = ["127.0.0.1"]
[pipeline]
staging = "file://{work}/staging"
download_ranges = {ranges}
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

def manifest_files(node):
    """Every file entry of a manifest, wherever it is listed (segments, transcripts, participant audio ...)."""
    if isinstance(node, dict):
        return [node] if "file_id" in node and "sha256" in node else [e for v in node.values() for e in manifest_files(v)]
    if isinstance(node, list):
        return [e for v in node for e in manifest_files(v)]
    return []

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks

def peak_rss_mib(pid):
    return next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM")) / 1024

processes = []
# Role -> process, in the order they print.
relays = {}
try:
    simulator = subprocess.Popen([bin_, "--config", config, "sim"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(simulator)
    roles = [("run", "run")] if workers == 0 else \
        [(c, c) for c in ("ingress", "plan", "assemble", "upload")] + [(f"download {n + 1}", "download") for n in range(workers)]
    admin = {role: 18400 + index for index, (role, _) in enumerate(roles)}
    for role, command in roles:
        # Processes sharing a host need distinct admin ports.
        env = dict(os.environ, ZOOM_RELAY__ADMIN__LISTEN=f"127.0.0.1:{admin[role]}")
        log = open(work / f"{role.replace(' ', '-')}.log", "w")
        relays[role] = subprocess.Popen([bin_, "--config", config, command], stdout=log, stderr=subprocess.STDOUT, env=env)
        processes.append(relays[role])
    wait_http(f"{sim}/_sim/stats")
    # Every process ready (connected, its queues declared, consuming) before the clock starts.
    for role in relays:
        wait_http(f"http://127.0.0.1:{admin[role]}/readyz")

    spec = {"segments": 1, "views": ["shared_screen_with_speaker_view"], "audio": True, "chat": False,
            "transcript": True, "transcript_later": False, "media_size": media, "participant_audio": participant_audio}
    if rate_mbps:
        spec["faults"] = {"MP4": {"bytes_per_second": int(rate_mbps * 1e6)}}
    created = [json.loads(request(f"{sim}/_sim/meetings", spec, {"content-type": "application/json"})) for _ in range(meetings)]
    total = sum(f["size"] for c in created for f in c["files"].values())

    # Each timed phase starts with nothing left to write back from the one before.
    os.sync()
    requests_before = len(json.loads(request(f"{sim}/_sim/requests")))
    cpu_before = {role: cpu_seconds(p.pid) for role, p in relays.items()}
    sim_cpu_before = cpu_seconds(simulator.pid)
    started = time.monotonic()
    for meeting in created:
        body = json.dumps(meeting["recording_completed"]).encode()
        ts = str(int(time.time()))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        request(f"{ingress}/zoom/webhook", body, {"content-type": "application/json",
                "x-zm-request-timestamp": ts, "x-zm-signature": signature})
    def landed():
        # A manifest is written once every file it lists is at the destination.
        return sum(len(manifest_files(json.load(open(m)))) for m in (work / "recordings").rglob("meeting.json"))
    files_total = sum(len(c["files"]) for c in created)
    while len(list((work / "recordings").rglob("meeting.json"))) < meetings or landed() < files_total:
        for role, p in relays.items():
            if p.poll() is not None:
                sys.exit(f"zoom-relay {role} exited; see target/bench-pipeline/")
        time.sleep(0.05)
    pipeline_seconds = time.monotonic() - started
    cpu = {role: cpu_seconds(p.pid) - cpu_before[role] for role, p in relays.items()}
    sim_cpu = cpu_seconds(simulator.pid) - sim_cpu_before
    rss = {role: peak_rss_mib(p.pid) for role, p in relays.items()}
    served = json.loads(request(f"{sim}/_sim/requests"))[requests_before:]
    api_calls = sum(1 for r in served if r["path"].startswith("/v2/"))
    token_calls = sum(1 for r in served if r["path"].startswith("/oauth"))
    file_calls = sum(1 for r in served if r["path"].startswith(("/rec/", "/files/")))
    for manifest in (work / "recordings").rglob("meeting.json"):
        for entry in manifest_files(json.load(open(manifest))):
            assert entry["sha256"] == next(c["files"][entry["file_id"]]["sha256"] for c in created if entry["file_id"] in c["files"])
    shutil.rmtree(work / "recordings")

    token = json.loads(request(f"{sim}/oauth/token?grant_type=account_credentials&account_id=bench-account", b"",
        {"authorization": "Basic " + __import__("base64").b64encode(b"bench-client:bench-client-secret").decode()}))["access_token"]
    lines = []
    for index, meeting in enumerate(created):
        recording = meeting["recording_completed"]["payload"]["object"]
        for file in recording["recording_files"] + recording.get("participant_audio_files", []):
            lines.append(f'url = "{file["download_url"]}"\noutput = "{work}/curl/{index}-{file["id"]}"\n')
    (work / "curl.cfg").write_text("".join(lines))
    os.sync()
    curl_cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(["curl", "-sS", "--no-progress-meter", "-L", "-Z", "--parallel-max", str(parallel), "-H", f"Authorization: Bearer {token}",
                    "-K", work / "curl.cfg"], check=True)
    curl_seconds = time.monotonic() - started
    # The pipeline's files are on disk when it reports them (local stores fsync); curl's are in the
    # page cache until written back. Both figures: curl as it returns, and curl once its files are
    # on disk too.
    os.sync()
    curl_synced_seconds = time.monotonic() - started
    curl_cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    curl_cpu = (curl_cpu_after.ru_utime - curl_cpu_before.ru_utime) + (curl_cpu_after.ru_stime - curl_cpu_before.ru_stime)
    fetched = sum(p.stat().st_size for p in (work / "curl").iterdir())
    assert fetched == total, (fetched, total)

    mb, gib = total / 1048576, total / 1073741824
    layout = "one `zoom-relay run`" if workers == 0 else f"a process per component, {workers} download"
    layout += f", {ranges} connection(s) per large file" + (f", MP4s served at {rate_mbps:g} MB/s a connection" if rate_mbps else "")
    print(f"bytes                 {total} ({mb:.0f} MiB in {meetings} meetings, {len(lines)} files; {layout})")
    print(f"pipeline              {mb / pipeline_seconds:8.1f} MB/s   first event -> last manifest {pipeline_seconds:6.1f} s"
          f"   CPU {sum(cpu.values()) / gib:.2f} s/GiB")
    print(f"curl (same files, -Z {parallel}) {mb / curl_seconds:8.1f} MB/s   {curl_seconds:6.1f} s"
          f"   CPU {curl_cpu / gib:.2f} s/GiB")
    print(f"curl, then sync       {mb / curl_synced_seconds:8.1f} MB/s   {curl_synced_seconds:6.1f} s")
    print(f"pipeline / curl       {curl_seconds / pipeline_seconds:8.2f}   (/ curl then sync {curl_synced_seconds / pipeline_seconds:.2f})")
    for role in relays:
        print(f"  {role:<12} CPU {cpu[role]:7.2f} s   peak RSS {rss[role]:6.1f} MiB")
    # The source shares the machine: with it, how many of the cores the pipeline phase kept busy.
    print(f"  simulator    CPU {sim_cpu:7.2f} s   cores busy (zoom-relay + simulator) {(sum(cpu.values()) + sim_cpu) / pipeline_seconds:.2f} of {os.cpu_count()}")
    print(f"per file              {api_calls / len(lines):.3f} API calls, {file_calls / len(lines):.2f} file requests"
          f" ({api_calls} API, {token_calls} token, {file_calls} file requests; {pipeline_seconds / len(lines) * 1000:.1f} ms a file)")
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
