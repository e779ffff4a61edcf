# zoom-relay: every entry point ops and developers need. Each target installs what is missing.
.PHONY: run test setup build lint fmt bench-ingress bench-download bench-pipeline test-cluster

## Run the local demo (RabbitMQ, simulator, whole pipeline) with the embedded defaults.
run: setup
	cargo build --release --quiet -p zoom-relay
	scripts/demo.sh

## Every check and test against the real local RabbitMQ (what CI runs).
test:
	scripts/test.sh

## A 3-node RabbitMQ cluster loses a node under load; every 200 archived and landed once (~2 min).
test-cluster:
	scripts/test-cluster.sh

## Install what is missing (Rust tools, RabbitMQ) and start RabbitMQ.
setup:
	scripts/setup.sh

build:
	cargo build --release -p zoom-relay

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

## Ingress throughput and latency beside a minimal handler, bare HTTP and the broker's ceiling
## (channels x confirms in flight), plus an open-loop run at a fixed rate (docs/benchmarks.md).
bench-ingress:
	scripts/bench-ingress.sh

## One 200 MiB and one 2 GiB file from the simulator: client vs curl, MB/s, CPU s/GiB, peak RSS.
bench-download:
	scripts/bench-download.sh

## 20 meetings (500 MiB MP4 + M4A + transcript) through `zoom-relay run`, beside curl: MB/s, CPU s/GiB,
## peak RSS, Zoom calls per file. WORKERS=N (a process per component, N download processes),
## MEETINGS, MEDIA_MIB, PARTICIPANT_AUDIO, RATE_MBPS and RANGES vary it (docs/benchmarks.md).
bench-pipeline:
	scripts/bench-pipeline.sh
