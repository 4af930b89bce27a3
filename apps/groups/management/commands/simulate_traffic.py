"""Send real HTTP prediction requests (and feedback) through a group's endpoint, so
that demo data is produced by the real path."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from apps.accounts.services import api_key_create, api_key_revoke
from apps.groups.models import ModelGroup
from apps.tenants.demo import demo_labels, demo_rows, feature_names
from apps.tenants.models import Organization


def synthetic_row(schema: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for feature in schema:
        c = feature.get("constraints") or {}
        kind = feature.get("type", "number")
        if c.get("enum"):
            row[feature["name"]] = rng.choice(c["enum"])
        elif kind in ("number", "integer"):
            low, high = c.get("minimum", 0.0), c.get("maximum", 1.0)
            value = rng.uniform(low, high)
            row[feature["name"]] = int(value) if kind == "integer" else round(value, 4)
        elif kind == "boolean":
            row[feature["name"]] = rng.random() < 0.5
        else:
            row[feature["name"]] = f"value-{rng.randint(1, 5)}"
    return row


class Command(BaseCommand):
    help = "Send N prediction requests through a group's REST endpoint, with feedback."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("tenant")
        parser.add_argument("group", help="group slug")
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument(
            "--feedback-rate",
            type=float,
            default=0.5,
            help="share of requests that get ground truth afterwards",
        )
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument(
            "--server",
            default="http://127.0.0.1:8000",
            help="where ModelHub listens (the tenant's host name is sent)",
        )
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        slug, count = options["tenant"], options["requests"]
        if not 0 <= options["feedback_rate"] <= 1:
            raise CommandError("--feedback-rate is between 0 and 1.")
        org = (
            Organization.objects.filter(schema_name=slug)
            .exclude(schema_name="public")
            .first()
        )
        if org is None:
            raise CommandError(f"No tenant '{slug}'.")
        host = org.get_primary_domain().domain
        with schema_context(slug):
            group = ModelGroup.objects.filter(slug=options["group"]).first()
            if group is None:
                raise CommandError(f"No group '{options['group']}' in {slug}.")
            champion = (
                group.members.filter(role="champion", active=True)
                .select_related("version")
                .first()
            )
            schema = champion.version.input_schema if champion else []
            api_key, raw = api_key_create(
                name="simulate_traffic",
                scope="predict",
                actor="command:simulate_traffic",
            )
        rng = random.Random(options["seed"])
        demo = [f["name"] for f in schema] == feature_names()
        if demo:
            pool = list(zip(demo_rows(569), demo_labels(569), strict=True))
        labels = (
            (champion.version.output_schema or {}).get("labels") if champion else None
        )

        def example() -> tuple[dict[str, Any], Any]:
            if demo:
                return rng.choice(pool)
            return synthetic_row(schema, rng), (rng.choice(labels) if labels else None)

        headers = {"Host": host, "Authorization": f"Api-Key {raw}"}
        base = options["server"].rstrip("/")
        outcomes: dict[str, int] = {}
        feedback: list[dict[str, Any]] = []
        started = time.monotonic()
        try:
            with httpx2.Client(timeout=30, headers=headers, trust_env=False) as client:

                def one(index: int) -> None:
                    inputs, truth = example()
                    response = client.post(
                        f"{base}/api/v1/groups/{group.slug}/predict/",
                        json={"inputs": inputs, "routing_key": f"sim-{index % 97}"},
                    )
                    key = str(response.status_code)
                    outcomes[key] = outcomes.get(key, 0) + 1
                    if (
                        response.status_code == 200
                        and truth is not None
                        and rng.random() < options["feedback_rate"]
                    ):
                        feedback.append(
                            {
                                "request_id": response.json()["request_id"],
                                "label": truth,
                            }
                        )

                with ThreadPoolExecutor(
                    max_workers=max(1, options["concurrency"])
                ) as pool_:
                    list(pool_.map(one, range(count)))
                sent = 0
                for i in range(0, len(feedback), 500):
                    response = client.post(
                        f"{base}/api/v1/groups/{group.slug}/feedback/",
                        json={"items": feedback[i : i + 500]},
                    )
                    sent += (
                        response.json().get("updated", 0) if response.is_success else 0
                    )
        except httpx2.HTTPError as exc:
            raise CommandError(f"Cannot reach ModelHub at {base}: {exc}") from exc
        finally:
            with schema_context(slug):
                api_key_revoke(prefix=api_key.prefix, actor="command:simulate_traffic")
        elapsed = time.monotonic() - started
        summary = ", ".join(f"{n} x {code}" for code, n in sorted(outcomes.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Sent {count} requests to {group.slug} in {elapsed:.1f} s ({summary}); "
                f"feedback recorded for {sent}."
            )
        )
