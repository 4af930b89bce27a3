"""Benchmark item 9: the OpenAI-compatible door with a local fake provider, against
the fake provider called directly.

A fake OpenAI server (http.server, HTTP/1.1 keep-alive, a fixed chat.completion) runs
in a thread of this process. The `bench-llm` group's provider points at it. In
alternating rounds, the official openai SDK (the same client settings) calls
  direct  the fake server:                 POST <fake>/v1/chat/completions
  door    ModelHub's door on gunicorn:     POST /openai/v1/chat/completions
          (authenticate, validate, route, call the provider through the connector,
          log the row, answer in chat.completion shape)
one call at a time. Added p50 = median over rounds of (door p50 - direct p50).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

from config.bench_views import FAKE_COMPLETION

SECTION = "openai_door"
COMPLETION = json.dumps(FAKE_COMPLETION).encode()


RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(COMPLETION)}\r\n\r\n".encode()
    + COMPLETION
)


class FakeOpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer and no Nagle: otherwise a delayed ACK adds ~40 ms to
    # every call and hides everything the door does.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(RESPONSE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    args = h.parse_args(__doc__ or "")
    state = h.prepare(fresh=args.fresh)
    # Calls per variant and round, or these seconds, whichever ends first. The door's
    # rounds spread by a millisecond and more on this shared machine: nine rounds of
    # 300 calls keep the paired median from following one slow moment.
    calls, seconds = (40, 1.0) if args.quick else (300, 6.0)
    rounds = h.ROUNDS if args.quick else 9

    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    fake.daemon_threads = True
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    fake_url = f"http://127.0.0.1:{fake.server_address[1]}/v1"

    h.django_setup(state)
    from django_tenants.utils import schema_context

    from apps.providers.models import ProviderConfig
    from apps.providers.services import provider_update

    with schema_context(h.TENANT):
        provider_update(
            provider=ProviderConfig.objects.get(pk=state["provider_id"]),
            actor="bench",
            base_url=fake_url,
        )

    import httpx2
    import openai

    messages = [{"role": "user", "content": "Is this tumour benign?"}]

    def client(base_url: str, key: str) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=key,
            base_url=base_url,
            max_retries=0,
            timeout=30,
            http_client=httpx2.Client(trust_env=False, timeout=30),
        )

    spooled = h.Server(state, name="openai-spool", env={"INFERENCE_LOG_MODE": "spool"})
    with h.Server(state, name="openai") as srv, spooled.start():
        direct = client(fake_url, "sk-bench-fake-000000")
        door = client(f"http://127.0.0.1:{srv.port}/openai/v1", state["api_key"])
        bare = client(f"http://127.0.0.1:{srv.port}/bench/bare-chat/v1", "unused")
        door_spool = client(
            f"http://127.0.0.1:{spooled.port}/openai/v1", state["api_key"]
        )

        def run(c: openai.OpenAI, model: str) -> dict[str, float]:
            latencies: list[float] = []
            started = time.perf_counter()
            while len(latencies) < calls and time.perf_counter() - started < seconds:
                t0 = time.perf_counter()
                answer = c.chat.completions.create(model=model, messages=messages)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert answer.choices[0].message.content == "benign."
            return {
                "p50_ms": h.percentile(latencies, 50),
                "p99_ms": h.percentile(latencies, 99),
                "calls": float(len(latencies)),
            }

        def warmup() -> None:
            for _ in range(10):
                direct.chat.completions.create(model="fake-gpt", messages=messages)
                door.chat.completions.create(
                    model=state["llm_group"], messages=messages
                )
                bare.chat.completions.create(model="fake-gpt", messages=messages)
                door_spool.chat.completions.create(
                    model=state["llm_group"], messages=messages
                )

        results = h.ab_rounds(
            {
                "direct": lambda: run(direct, "fake-gpt"),
                "door": lambda: run(door, state["llm_group"]),
                "bare": lambda: run(bare, "fake-gpt"),
                "door_spool": lambda: run(door_spool, state["llm_group"]),
            },
            rounds=rounds,
            warmup=warmup,
            label="openai door",
        )
        for each in (direct, door, bare, door_spool):
            each.close()
    fake.shutdown()

    def added_p50(base: str, other: str) -> float:
        return h.paired(results, base, other, "p50_ms")

    added = added_p50("direct", "door")
    added_spool = added_p50("direct", "door_spool")
    sp = results["door_spool"]["median"]
    floor = added_p50("direct", "bare")
    own = added_p50("bare", "door")
    d, m = results["direct"]["median"], results["door"]["median"]
    b = results["bare"]["median"]
    out = [
        h.Row(
            id=row_id,
            what=what,
            baseline=f"direct p50 {d['p50_ms']:.2f} / p99 {d['p99_ms']:.2f} ms",
            measured=f"p50 {x['p50_ms']:.2f} / p99 {x['p99_ms']:.2f} ms",
            delta=f"+{extra:.2f} ms p50",
            goal="added p50 <= 1 ms",
            passed=extra <= 1.0,
            data={"added_p50_ms": extra},
        )
        for row_id, what, x, extra in (
            ("9", "OpenAI door, fake provider, c=1", m, added),
            (
                "9 spool",
                "OpenAI door, fake provider, c=1, log spooled",
                sp,
                added_spool,
            ),
        )
    ]
    out += [
        h.Row(
            id="9 ctx",
            what="a bare Django view on the same server, fixed answer",
            baseline=f"direct p50 {d['p50_ms']:.2f} ms",
            measured=f"p50 {b['p50_ms']:.2f} / p99 {b['p99_ms']:.2f} ms",
            delta=f"+{floor:.2f} ms p50",
            goal="(context: the floor of any door here)",
            passed=None,
            data={"added_p50_ms": floor},
        ),
        h.Row(
            id="9 ctx",
            what="  the door above that bare view (ModelHub's own work)",
            baseline=f"bare view p50 {b['p50_ms']:.2f} ms",
            measured=f"door p50 {m['p50_ms']:.2f} ms",
            delta=f"+{own:.2f} ms p50",
            goal="(context)",
            passed=None,
            data={"added_p50_ms": own},
        ),
    ]
    h.result_write(
        SECTION,
        out,
        {
            "quick": args.quick,
            "calls": calls,
            "seconds": seconds,
            "rounds": rounds,
            "results": results,
        },
    )
    print(h.table(out))


if __name__ == "__main__":
    main()
