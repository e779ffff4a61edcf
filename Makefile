# zoom-relay: every entry point ops and developers need. Each target installs what is missing.
.PHONY: run test setup build lint fmt bench-ingress bench-download bench-pipeline

## Run the local demo (RabbitMQ, simulator, whole pipeline) with the embedded defaults.
run: setup
	cargo build --release --quiet -p zoom-relay
	scripts/demo.sh

## Every check and test against the real local RabbitMQ (what CI runs).
test:
	scripts/test.sh

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

## Ingress throughput and latency against its two ceilings (docs/benchmarks.md).
bench-ingress:
	scripts/bench-ingress.sh

## One 200 MiB and one 2 GiB file from the simulator: client vs curl, MB/s and peak RSS.
bench-download:
	scripts/bench-download.sh

## 20 meetings (500 MiB MP4 + M4A + transcript) through `zoom-relay run`, beside curl.
bench-pipeline:
	scripts/bench-pipeline.sh
