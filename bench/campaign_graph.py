"""The campaign graph's build time and memory: the default world and ten times its users and posts.

    .venv/bin/python bench/campaign_graph.py [--scales 1,10] [--days 30]

For each scale the simulator writes a world of scale x (4,000 users, 2,000 posts a day) over `--days`
days; a fresh child process then builds what the campaign work reads from it (ml/campaigns): MinHash
signatures of every distinct text, near-duplicate text neighbours (LSH), the links, numbers and
addresses of every post, the point-in-time campaign features of every post, and the campaigns (connected
components across accounts, and which of them the campaign rule keeps as coordinated). Each stage's wall
time, and the child's peak RSS (VmHWM: the whole build, the inputs included), so the 10x figure says how the
graph grows; and how the rule (burst, shared artifact, shared device or IP fingerprint) sorts the clusters
against the simulator's ring campaigns (`rule_against_truth`).
Writes bench/results/campaign_graph.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
from report import write_report  # bench/report.py, beside this script

from ml.campaigns.clusters import CampaignRule, campaign_keys, campaigns
from ml.campaigns.features import campaign_features, confirmed_removals
from ml.campaigns.links import account_fingerprints, post_artifacts, text_neighbours, text_signatures
from ml.corpora import load_text_pool
from ml.matching.text import TextMatchParams
from ml.simulator import simulate_days
from ml.world import SimConfig, ring_styles
from orchestration.settings import Settings

TABLES = ("content", "decisions", "appeals", "users", "content_truth", "user_truth")


def build(folder: Path) -> dict:
    """In the child: every stage of the graph over the world in `folder`, timed."""
    content, decisions, appeals, accounts, truth, users = (pl.read_parquet(folder / f"{t}.parquet") for t in TABLES)
    params, seconds = TextMatchParams(), {}

    def timed(name, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        seconds[name] = round(time.perf_counter() - started, 2)
        return out

    sigs = timed("signatures", text_signatures, content.select("text_hash", "text"), None, params)
    neighbours = timed("text_neighbours", text_neighbours, sigs, params)
    artifacts = timed("artifacts", post_artifacts, content)
    removals = timed("confirmed_removals", confirmed_removals, decisions, appeals)
    feats = timed("campaign_features", campaign_features, content, content, neighbours, artifacts, removals)
    keys = timed("campaign_keys", campaign_keys, content, neighbours, artifacts)
    every, members = timed(
        "campaigns",
        campaigns,
        content,
        keys,
        removals,
        decisions,
        CampaignRule(coordinated_only=False),
        account_fingerprints(accounts),
    )
    found = every.filter(pl.col("coordination") != "none")
    vmhwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    return {
        "posts": content.height,
        "distinct_texts": sigs.height,
        "text_links": neighbours.height - sigs.height,
        "artifact_rows": artifacts.height,
        "feature_rows": feats.height,
        "campaigns": found.height,
        "clusters_across_accounts": every.height,
        "rule_against_truth": rule_against_truth(every, members, truth, content, users),
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 2),
        "peak_rss_mb": round(vmhwm / 1024),
    }


def rule_against_truth(
    every: pl.DataFrame, members: pl.DataFrame, truth: pl.DataFrame, content: pl.DataFrame, users: pl.DataFrame
) -> dict:
    """How the campaign rule (coordination) sorts the clusters across accounts, against the simulator's truth
    (read here only): a cluster is a ring's when most of its posts are ring campaign posts. Precision: the
    share of the rule's campaigns that are rings'; recall: the share of ring campaign posts in one of them;
    and the share of the other clusters (popular phrases) the rule drops. Many clusters that are no ring's are
    still coordinated abuse: the SMS spam corpora's messages share premium numbers across texts, posted by the
    simulator's ordinary spam accounts, so the share of violating posts among the posts kept and dropped says
    more than ring precision alone. Recall is also given by the ring's style (ml/ring_campaigns.py)."""
    ring_post = truth.select(
        "content_id", (pl.col("campaign_id") >= 0).alias("ring"), (pl.col("true_policy") != "benign").alias("violating")
    )
    clusters = (
        members.join(ring_post, on="content_id", how="left")
        .group_by("campaign_id")
        .agg(pl.col("ring").fill_null(False).mean().alias("ring_share"), pl.col("violating").sum().alias("violating"))
        .join(every.select("campaign_id", "coordination"), on="campaign_id")
        .with_columns(is_ring=pl.col("ring_share") > 0.5, kept=pl.col("coordination") != "none")
    )
    kept, rings = clusters.filter("kept"), clusters.filter("is_ring")
    in_kept = members.join(kept.select("campaign_id"), on="campaign_id").select("content_id")
    ring_posts = ring_post.filter("ring")
    others = clusters.filter(~pl.col("is_ring"))
    return {
        "clusters": clusters.height,
        "ring_clusters": rings.height,
        "kept": kept.height,
        "precision": round(kept["is_ring"].mean(), 4) if kept.height else None,
        "ring_clusters_kept": round(rings["kept"].mean(), 4) if rings.height else None,
        "ring_post_recall": round(ring_posts.join(in_kept, on="content_id").height / max(ring_posts.height, 1), 4),
        "ring_post_recall_by_style": recall_by_style(ring_posts, in_kept, content, users),
        "other_clusters_dropped": round(1 - others["kept"].mean(), 4) if others.height else None,
        "violating_share_of_posts_kept": violating_share(clusters.filter("kept"), every),
        "violating_share_of_posts_dropped": violating_share(clusters.filter(~pl.col("kept")), every),
    }


def recall_by_style(
    ring_posts: pl.DataFrame, in_kept: pl.DataFrame, content: pl.DataFrame, users: pl.DataFrame
) -> dict[str, float]:
    """The share of each ring style's campaign posts that are in a kept campaign."""
    style = users.select(author_id="user_id", style=pl.col("ring_id").map_batches(ring_styles))
    posts = (
        ring_posts.join(content.select("content_id", "author_id"), on="content_id")
        .join(style, on="author_id")
        .with_columns(found=pl.col("content_id").is_in(in_kept["content_id"].implode()))
    )
    return {s: round(float(f), 4) for s, f in posts.group_by("style").agg(pl.col("found").mean()).sort("style").rows()}


def violating_share(clusters: pl.DataFrame, every: pl.DataFrame) -> float | None:
    posts = clusters.join(every.select("campaign_id", "posts"), on="campaign_id")["posts"].sum()
    return round(clusters["violating"].sum() / posts, 4) if posts else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build(args.child)))
        return
    pool, _ = load_text_pool(Settings.from_env().corpora)
    runs = {}
    for scale in (int(s) for s in args.scales.split(",")):
        config = SimConfig(users=4_000 * scale, content_per_day=2_000 * scale)
        raw = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=args.days - 1))
        with tempfile.TemporaryDirectory(prefix="trustlake-bench-graph-") as tmp:
            for t in TABLES:
                raw[t].write_parquet(Path(tmp) / f"{t}.parquet")
            child = subprocess.run(
                [sys.executable, __file__, "--child", tmp], capture_output=True, text=True, check=True
            )
        runs[f"{scale}x"] = {"users": config.users, "days": args.days, **json.loads(child.stdout.splitlines()[-1])}
        print(f"{scale}x: {runs[f'{scale}x']}", file=sys.stderr)
    if "1x" in runs and "10x" in runs:
        runs["ratio_10x_over_1x"] = {
            "seconds": round(runs["10x"]["total_seconds"] / runs["1x"]["total_seconds"], 2),
            "peak_rss": round(runs["10x"]["peak_rss_mb"] / runs["1x"]["peak_rss_mb"], 2),
        }
    write_report("campaign_graph", runs)


if __name__ == "__main__":
    main()
