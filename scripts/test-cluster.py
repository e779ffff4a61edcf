#!/usr/bin/env python3
"""make test-cluster: zoom-relay on a 3-node RabbitMQ cluster loses a node and carries on.

Starts the throw-away cluster of scripts/cluster.sh (zr1..zr3@localhost), then the simulator and one
process per component (ingress, plan, download, assemble, upload, cleanup), each given the three
nodes' URLs in its own order so the connections spread over the cluster. A steady load of meetings
(created in the simulator, their `recording.completed` posted to the ingress, retried on a non-200
answer the way Zoom retries) runs for LOAD_SECONDS; KILL_AT seconds in, `kill -9` takes down the
node leading the archive stream (and some of the queues); RESTART_AT seconds in it is started
again. Then the checks:

  - every event answered 200 is in the archive stream (read back with `zoom-relay replay --to-file`);
  - every meeting answered 200 landed: one meeting.json, its files there with the simulator's SHA-256;
  - no meeting landed twice (one manifest per meeting, no stray objects), nothing dead-lettered;
  - every process still runs with the pid it started with (none needed a restart).

Prints the figures (events sent, answers, landed, duplicates, time to recover, durations) and exits
non-zero when a check fails. Environment: RATE (meetings/s, default 4), LOAD_SECONDS (75), KILL_AT
(20), RESTART_AT (45), MEDIA_KIB (64, per MP4), CLUSTER_DIR (/tmp/zoom-relay-test-cluster)."""
import hashlib, hmac, json, os, pathlib, re, shutil, subprocess, sys, threading, time
import urllib.error, urllib.request

root = pathlib.Path(__file__).resolve().parent.parent
work = root / "target" / "test-cluster"
bin_ = root / "target" / "release" / "zoom-relay"
cluster_sh = root / "scripts" / "cluster.sh"
cluster_dir = os.environ.get("CLUSTER_DIR", "/tmp/zoom-relay-test-cluster")
rate = float(os.environ.get("RATE", "4"))
load_seconds = float(os.environ.get("LOAD_SECONDS", "75"))
kill_at = float(os.environ.get("KILL_AT", "20"))
restart_at = float(os.environ.get("RESTART_AT", "45"))
media = int(os.environ.get("MEDIA_KIB", "64")) * 1024
namespace = f"cluster{int(time.time())}."
sim, ingress = "http://127.0.0.1:19494", "http://127.0.0.1:18484"
secret = "cluster-secret"
components = ["ingress", "plan", "download", "assemble", "upload", "cleanup"]
admin_port = {name: 19601 + index for index, name in enumerate(components)}


def log(message):
    print(f"test-cluster: {message}", file=sys.stderr, flush=True)


def request(url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.status, response.read()


def status_of(url, body=None, headers=None, timeout=10):
    """The HTTP status, or 0 when nothing answered."""
    try:
        return request(url, body, headers, timeout)[0]
    except urllib.error.HTTPError as error:
        return error.code
    except Exception:
        return 0


def wait_until(what, condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"test-cluster: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def cluster(*arguments, check=True):
    started = time.monotonic()
    done = subprocess.run([str(cluster_sh), *arguments], stdout=subprocess.PIPE, text=True)
    if check and done.returncode != 0:
        sys.exit(f"test-cluster: cluster.sh {' '.join(arguments)} failed")
    return done.stdout, time.monotonic() - started


def ready(name):
    return status_of(f"http://127.0.0.1:{admin_port[name]}/readyz", timeout=2) == 200


def signed_post(event):
    body = json.dumps(event).encode()
    stamp = str(int(time.time()))
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-zm-request-timestamp": stamp, "x-zm-signature": signature}
    return status_of(f"{ingress}/zoom/webhook", body, headers, timeout=10)


class Load:
    """RATE meetings a second, each posted until answered 200 (at most 10 tries, 1 s apart)."""

    def __init__(self):
        self.meetings = {}        # uuid -> {"files": {file_id: sha256}, "answers": [status...]}
        self.answers = []         # (monotonic time, status) of every post
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def one(self):
        spec = {"segments": 1, "views": ["shared_screen_with_speaker_view"], "audio": True, "chat": False,
                "transcript": True, "transcript_later": False, "media_size": media}
        _, raw = request(f"{sim}/_sim/meetings", spec, {"content-type": "application/json"})
        created = json.loads(raw)
        files = {file_id: file["sha256"] for file_id, file in created["files"].items()}
        record = {"files": files, "answers": []}
        with self.lock:
            self.meetings[created["uuid"]] = record
        for _ in range(10):
            answer = signed_post(created["recording_completed"])
            with self.lock:
                record["answers"].append(answer)
                self.answers.append((time.monotonic(), answer))
            if answer == 200:
                return
            time.sleep(1)

    def run(self):
        period, next_at, threads = 1 / rate, time.monotonic(), []
        while not self.stop.is_set():
            # A slow answer must not slow the load: each meeting has a thread of its own.
            thread = threading.Thread(target=self.one, daemon=True)
            thread.start()
            threads.append(thread)
            next_at += period
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        for thread in threads:
            thread.join(timeout=30)


class Readiness:
    """Polls every process's /readyz: when each was last not ready, and since when all are."""

    def __init__(self):
        self.samples = []         # (monotonic time, {name: ready})
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), {name: ready(name) for name in components}))
            self.stop.wait(0.2)

    def all_ready_again_after(self, moment):
        """Seconds from `moment` until every process was ready again (None: never, or never lost)."""
        lost = False
        for at, states in self.samples:
            if at < moment:
                continue
            if not all(states.values()):
                lost = True
            elif lost:
                return at - moment
        return None if lost else 0.0


def management(path):
    """GET from the management API of the first node that answers."""
    for port in (15681, 15682, 15683):
        try:
            return json.loads(request(f"http://127.0.0.1:{port}{path}",
                                      headers={"authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}, timeout=5)[1])
        except Exception:
            continue
    raise RuntimeError("no node's management API answered")


def queue_leaders():
    """The namespace's queues and streams, and the node leading each."""
    return {q["name"]: q.get("node") for q in management("/api/queues/%2F?columns=name,node")
            if q["name"].startswith(namespace)}


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    started = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cluster("stop", cluster_dir, check=False)  # a cluster left by an interrupted run
    log("starting the 3-node cluster")
    env_lines, cluster_seconds = cluster("start", cluster_dir)
    env = dict(line.split("=", 1) for line in env_lines.splitlines() if "=" in line)
    urls = env["CLUSTER_AMQP_URLS"].split(",")
    processes = {}
    try:
        run(started, urls, processes, cluster_seconds)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        cluster("stop", cluster_dir, check=False)


def run(started, urls, processes, cluster_seconds):
    config = work / "zoom-relay.toml"
    config.write_text(f"""
[amqp]
url = "{",".join(urls)}"
# A cluster node's, not the default (the system node's 127.0.0.1:15672). Policies are applied at
# each connection; while this node is down that is a warning, never a failure.
management_url = "http://guest:guest@127.0.0.1:15683/"
namespace = "{namespace}"
heartbeat = "5s"
connect_timeout = "5s"
reconnect_max_backoff = "2s"
[ingress]
listen = "127.0.0.1:18484"
[sim]
listen = "127.0.0.1:19494"
[zoom]
oauth_url = "{sim}/oauth/token"
api_base = "{sim}/v2"
download_hosts = ["127.0.0.1"]
[pipeline]
staging = "file://{work}/staging"
[log]
level = "warn"
format = "json"
[[accounts]]
name = "cluster"
account_id = "cluster-account"
client_id = "cluster-client"
client_secret = "cluster-client-secret"
secret_tokens = ["{secret}"]
destination = "file://{work}/recordings"
""")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ZOOM_RELAY")}
    processes["sim"] = subprocess.Popen([bin_, "--config", config, "sim"], stdout=open(work / "sim.log", "w"),
                                        stderr=subprocess.STDOUT, env=base_env)
    for index, name in enumerate(components):
        # Each process lists the nodes from a different one: connections spread over the cluster.
        order = urls[index % 3:] + urls[:index % 3]
        process_env = dict(base_env, ZOOM_RELAY__AMQP__URL=",".join(order),
                           ZOOM_RELAY__ADMIN__LISTEN=f"127.0.0.1:{admin_port[name]}")
        processes[name] = subprocess.Popen([bin_, "--config", config, name], stdout=open(work / f"{name}.log", "w"),
                                           stderr=subprocess.STDOUT, env=process_env)
    pids = {name: process.pid for name, process in processes.items()}
    wait_until("the simulator", lambda: status_of(f"{sim}/_sim/stats", timeout=2) == 200, 30)
    wait_until("every process ready", lambda: all(ready(name) for name in components), 60)
    log(f"cluster up in {cluster_seconds:.1f} s; {len(components)} processes ready; "
        f"load: {rate:g} meetings/s for {load_seconds:g} s, a kill -9 at {kill_at:g} s, restart at {restart_at:g} s")

    # The victim is the node leading the archive stream: the hardest loss for the ingress.
    leaders = queue_leaders()
    archive_leader = next(node for name, node in leaders.items() if name.endswith("archive"))
    victim = int(re.match(r"zr(\d)@", archive_leader).group(1))
    on_victim = sum(1 for node in leaders.values() if node == archive_leader)
    log(f"zr{victim} leads the archive stream and {on_victim - 1} of the other {len(leaders) - 1} queues: it will be killed")

    load, readiness = Load(), Readiness()
    threads = [threading.Thread(target=load.run), threading.Thread(target=readiness.run)]
    load_started = time.monotonic()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    for thread in threads:
        thread.start()
    time.sleep(kill_at)
    killed_at = time.monotonic()
    cluster("kill", str(victim), cluster_dir)
    log(f"killed zr{victim} at {killed_at - load_started:.1f} s")
    time.sleep(max(0.0, restart_at - (time.monotonic() - load_started)))
    restart_began = time.monotonic()
    _, restart_seconds = cluster("start-node", str(victim), cluster_dir)
    log(f"zr{victim} back in the cluster after {restart_seconds:.1f} s (at {restart_began - load_started:.1f} s)")
    time.sleep(max(0.0, load_seconds - (time.monotonic() - load_started)))
    load.stop.set()
    threads[0].join()
    load_seconds_run = time.monotonic() - load_started
    log("load stopped; waiting for every meeting answered 200 to land")

    accepted = {uuid for uuid, record in load.meetings.items() if 200 in record["answers"]}
    recordings = work / "recordings"

    def landed_uuids():
        found = {}
        for manifest in recordings.rglob("meeting.json") if recordings.exists() else []:
            try:
                uuid = json.loads(manifest.read_text())["meeting_uuid"]
            except (OSError, ValueError, KeyError):
                continue  # being written
            found.setdefault(uuid, []).append(manifest)
        return found

    drain_started = time.monotonic()
    deadline = drain_started + 300
    while not accepted <= set(landed_uuids()) and time.monotonic() < deadline:
        time.sleep(0.5)
    drained_at = time.monotonic()
    readiness.stop.set()
    threads[1].join()

    # Every 200 in the archive: read back from the stream by the replay tool, through the cluster.
    archive_file = work / "archive.jsonl"
    replay = subprocess.run([bin_, "--config", config, "replay", "--since", since, "--to-file", archive_file,
                             "--rate", "100000", "--state-dir", work / "replay-state"],
                            stdout=subprocess.PIPE, stderr=open(work / "replay.log", "w"), text=True,
                            env=dict(os.environ, ZOOM_RELAY__ADMIN__LISTEN="127.0.0.1:0"))
    archived = {}
    if archive_file.exists():
        for line in archive_file.read_text().splitlines():
            entry = json.loads(line)
            uuid = entry.get("meeting_uuid")
            if entry.get("event") == "recording.completed" and uuid:
                archived[uuid] = archived.get(uuid, 0) + 1

    # Landed once and whole.
    landed = landed_uuids()
    bad_files, stray = [], []
    for uuid in accepted & set(landed):
        manifest = json.loads(landed[uuid][0].read_text())
        entries = [f for segment in manifest["segments"] for f in segment["files"]] + manifest["transcripts"]
        expected = load.meetings[uuid]["files"]
        if sorted(f["file_id"] for f in entries) != sorted(expected):
            bad_files.append(uuid)
        for entry in entries:
            if entry["sha256"] != expected.get(entry["file_id"]):
                bad_files.append(uuid)
    objects = [p for p in recordings.rglob("*") if p.is_file()] if recordings.exists() else []
    expected_objects = sum(len(load.meetings[uuid]["files"]) + 1 for uuid in landed if uuid in load.meetings)
    if len(objects) != expected_objects:
        stray = [str(p) for p in objects][:5]
    duplicates = {uuid: len(paths) for uuid, paths in landed.items() if len(paths) > 1}

    # Processes: alive, same pids, and what their counters say.
    alive = {name: process.poll() is None and process.pid == pids[name] for name, process in processes.items()}
    metrics = ""
    for name in components:
        try:
            metrics += request(f"http://127.0.0.1:{admin_port[name]}/metrics")[1].decode() + "\n"
        except Exception:
            pass
    dead_lettered = metric_sum(metrics, "zoom_relay_stage_dead_lettered_total")
    retried = metric_sum(metrics, "zoom_relay_stage_messages_total", outcome="retried")
    uploads = metric_sum(metrics, "zoom_relay_stage_messages_total", stage="upload", outcome="ok")
    dlq_depth = 0
    try:
        dlq_depth = sum(q.get("messages", 0) for q in management("/api/queues/%2F?columns=name,messages")
                        if q["name"].startswith(namespace) and re.search(r"dead|dlq", q["name"]))
    except Exception as error:
        log(f"could not read the dead-letter queues: {error}")

    answers = [status for _, status in load.answers]
    after_kill = [(at, status) for at, status in load.answers if at >= killed_at]
    first_200_after_kill = next((at - killed_at for at, status in after_kill if status == 200), None)
    failed_after_kill = [at for at, status in after_kill if status != 200]
    last_failure = (max(failed_after_kill) - killed_at) if failed_after_kill else 0.0
    recover = readiness.all_ready_again_after(killed_at)
    missing_archive = sorted(uuid for uuid in accepted if uuid not in archived)
    not_landed = sorted(accepted - set(landed))
    total = time.monotonic() - started

    print(f"events sent (posts)          {len(answers)} for {len(load.meetings)} meetings, "
          f"{len(load.meetings) / load_seconds_run:.1f} meetings/s for {load_seconds_run:.0f} s")
    print(f"answers                      200: {answers.count(200)}, other: "
          f"{ {s: answers.count(s) for s in sorted(set(answers)) if s != 200} }")
    print(f"meetings answered 200        {len(accepted)} of {len(load.meetings)}")
    print(f"in the archive               {len(accepted) - len(missing_archive)} of {len(accepted)} "
          f"({sum(archived.values())} archive entries; replay exit {replay.returncode})")
    print(f"landed (files + SHA-256)     {len(accepted) - len(not_landed)} of {len(accepted)}, "
          f"wrong files: {len(set(bad_files))}, last landed {drained_at - load_started - load_seconds_run:.1f} s after the load stopped")
    print(f"duplicates                   {len(duplicates)} meetings landed twice, {len(stray)} stray objects "
          f"(upload tasks done: {uploads:.0f}, stage retries: {retried:.0f})")
    print(f"dead-lettered                {dead_lettered:.0f} (dead-letter queues hold {dlq_depth})")
    print(f"{f'after kill -9 zr{victim}':<29}first 200 after {first_200_after_kill if first_200_after_kill is None else round(first_200_after_kill, 2)} s, "
          f"last non-200 at +{last_failure:.1f} s, every process ready again after "
          f"{'never' if recover is None else f'{recover:.1f} s'}")
    print(f"{f'leaders on zr{victim}':<29}the archive stream and {on_victim - 1} of {len(leaders) - 1} queues when it was killed")
    print(f"{f'zr{victim} restart':<29}{restart_seconds:.1f} s until back in the cluster with its members online")
    print(f"processes                    {sum(alive.values())} of {len(alive)} still running with their first pid")
    print(f"durations                    cluster start {cluster_seconds:.1f} s, load {load_seconds_run:.0f} s, "
          f"drain {drained_at - drain_started:.1f} s, total {total:.0f} s (teardown follows)")

    failures = []
    if not accepted:
        failures.append("no event was answered 200")
    if missing_archive:
        failures.append(f"{len(missing_archive)} events answered 200 are not in the archive, e.g. {missing_archive[:3]}")
    if not_landed:
        failures.append(f"{len(not_landed)} meetings answered 200 did not land, e.g. {not_landed[:3]}")
    if bad_files:
        failures.append(f"{len(set(bad_files))} meetings landed with wrong files")
    if duplicates or stray:
        failures.append(f"landed more than once: {duplicates or stray}")
    if dead_lettered or dlq_depth:
        failures.append(f"dead-lettered: {dead_lettered:.0f} counted, {dlq_depth} queued")
    if not all(alive.values()):
        failures.append(f"processes exited or were replaced: {[n for n, ok in alive.items() if not ok]}")
    if recover is None:
        failures.append("some process never became ready again after the kill")
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        print(f"logs: {work}/*.log")
        sys.exit(1)
    print("ok: every 200 archived and landed once; no process restarted")


if __name__ == "__main__":
    main()
