"""Speed benchmark: ``python -m eval.bench --docs N [--json] [--skip-rank-bm25] [--queries Q] [--no-embed]``.

A seeded synthetic bilingual corpus (a 50k-term Zipf vocabulary of pseudo-English and Chinese words, plus
error codes and versions) is indexed on the same tokens by our BM25 (``SparseIndex``), rank-bm25 and tantivy,
and, up to ``MAX_EMBED_DOCS``, by the full ``SearchEngine`` with the real embedding model. Query set *a*
draws 3-8 terms from the corpus distribution; set *b* ("rare") does the same without the 100 most common
terms. Latencies are per query from one caller thread, after warm-up queries. Figures go to eval/BENCH.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from kb.search.sparse import BM25Params, SparseIndex
from kb.search.types import Document, FloatArray

Q = TypeVar("Q")
R = TypeVar("R")
Int32Array = npt.NDArray[np.int32]

VOCAB_TERMS: Final = 50_000  # word ids 0..49,999 in Zipf rank order; codes and versions follow
ZIPF_S: Final = 1.0
DOC_WORDS: Final = (80, 160)  # words per document, uniform: ~120 tokens with the codes and versions
N_CODES: Final = 1_000  # distinct 0x8007xxxx error codes
N_VERSIONS: Final = 200
QUERY_TERMS: Final = (3, 8)
RARE_SKIP: Final = 100  # set b never draws the 100 most common words
HYBRID_TERMS: Final = 12  # engine documents: the first 12 tokens (3 title + 9 body), so embedding stays feasible
MAX_EMBED_DOCS: Final = 200_000  # beyond this hybrid is skipped: embedding would take hours here
K: Final = 10
LANGS: Final = ("en", "zh", "mixed")
_CJK: Final = (  # 400 common characters; Chinese words are 2-4 of them
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种"
    "面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
    "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比"
    "或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做"
    "必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权"
    "收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信"
    "马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连"
)
_ONSETS: Final = (*"bcdfghjklmnprstvwz", "ch", "sh", "th", "tr", "pl", "st")
_VOWELS: Final = (*"aeiou", "ai", "ea", "ou")


@dataclass(frozen=True, slots=True)
class Vocab:
    """Word ids ``[0, VOCAB_TERMS)`` by Zipf rank (0 is the most common), then codes, then versions."""

    terms: list[str]
    prob: npt.NDArray[np.float64]  # Zipf probability of each word id
    zh: npt.NDArray[np.bool_]  # word id is a Chinese word

    def sample(self, rng: np.random.Generator, n: int, lang: int, skip: int = 0) -> Int32Array:
        """``n`` word ids drawn by Zipf probability among ``LANGS[lang]`` words of rank >= ``skip``."""
        ok = np.ones(VOCAB_TERMS, np.bool_) if LANGS[lang] == "mixed" else self.zh == (LANGS[lang] == "zh")
        ok[:skip] = False
        ids = np.flatnonzero(ok)
        cdf = np.cumsum(self.prob[ids])
        drawn: Int32Array = ids[np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")].astype(np.int32)
        return drawn


@dataclass(frozen=True, slots=True)
class Corpus:
    """Documents as token ids: row ``r`` is ``ids[offsets[r]:offsets[r + 1]]``, in language ``LANGS[lang[r]]``."""

    vocab: Vocab
    ids: Int32Array
    offsets: npt.NDArray[np.int64]
    lang: npt.NDArray[np.int8]

    def tokens(self) -> list[list[str]]:
        """Every document as its list of terms (the str objects are shared with the vocabulary)."""
        flat = np.asarray(self.vocab.terms, dtype=object)[self.ids].tolist()
        bounds = self.offsets.tolist()
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def documents(self, n_terms: int = HYBRID_TERMS) -> list[Document]:
        """Engine documents ``d<row>``: title = the first 3 tokens, text = the next ``n_terms - 3``."""
        terms, docs = self.vocab.terms, []
        for row, start in enumerate(self.offsets[:-1].tolist()):
            toks = [terms[i] for i in self.ids[start : min(start + n_terms, self.offsets[row + 1])].tolist()]
            docs.append(Document(f"d{row}", " ".join(toks[:3]), " ".join(toks[3:]), LANGS[self.lang[row]]))
        return docs


def _unique(make_batch: Callable[[int], list[str]], n: int) -> list[str]:
    """The first ``n`` distinct strings of successive batches (deterministic, in batch order)."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.update(dict.fromkeys(make_batch(2 * n)))
    return list(seen)[:n]


def make_vocab(seed: int = 0) -> Vocab:
    """The seeded vocabulary: half syllable words ("vujiba"), half Chinese words; ranks interleave them."""
    rng = np.random.default_rng([seed, 0])

    def en_words(m: int) -> list[str]:
        syllables = np.char.add(
            np.array(_ONSETS)[rng.integers(len(_ONSETS), size=(m, 3))],
            np.array(_VOWELS)[rng.integers(len(_VOWELS), size=(m, 3))],
        ).tolist()
        ends = np.where(rng.random(m) < 0.5, np.array(list("nrlst"))[rng.integers(5, size=m)], "").tolist()
        return ["".join(s[:n]) + e for s, n, e in zip(syllables, rng.integers(2, 4, m).tolist(), ends, strict=True)]

    def zh_words(m: int) -> list[str]:
        chars = np.array(list(_CJK))[rng.integers(len(_CJK), size=(m, 4))].tolist()
        return ["".join(c[:n]) for c, n in zip(chars, rng.choice([2, 2, 2, 3, 3, 4], m).tolist(), strict=True)]

    half = VOCAB_TERMS // 2
    pool = _unique(en_words, half) + _unique(zh_words, VOCAB_TERMS - half)
    order = rng.permutation(VOCAB_TERMS)
    codes = [f"0x8007{v:04x}" for v in rng.choice(1 << 16, N_CODES, replace=False).tolist()]
    versions = _unique(
        lambda m: [f"{a}.{b}.{c}" for a, b, c in rng.integers([1, 0, 0], [20, 10, 10_000], (m, 3)).tolist()], N_VERSIONS
    )
    prob = 1.0 / np.arange(1, VOCAB_TERMS + 1) ** ZIPF_S
    return Vocab([pool[i] for i in order] + codes + versions, prob / prob.sum(), order >= half)


def generate_corpus(n_docs: int, seed: int = 0, vocab: Vocab | None = None) -> Corpus:
    """``n_docs`` documents (a third each en, zh, mixed): 0-2 error codes and 0-1 version, then 80-160 words."""
    vocab = vocab or make_vocab(seed)
    rng = np.random.default_rng([seed, 1])
    lang = rng.integers(0, 3, n_docs).astype(np.int8)
    n_codes, n_versions = rng.binomial(2, 0.15, n_docs), rng.binomial(1, 0.15, n_docs)
    head = n_codes + n_versions
    sizes = head + rng.integers(DOC_WORDS[0], DOC_WORDS[1] + 1, n_docs)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    ids = np.empty(int(offsets[-1]), np.int32)
    is_word = np.ones(ids.size, np.bool_)
    for slot in range(3):  # the head slots: codes first, then the version
        rows = np.flatnonzero(head > slot)
        at, code = offsets[rows] + slot, slot < n_codes[rows]
        is_word[at] = False
        ids[at[code]] = VOCAB_TERMS + rng.integers(0, N_CODES, int(code.sum()))
        ids[at[~code]] = VOCAB_TERMS + N_CODES + rng.integers(0, N_VERSIONS, int((~code).sum()))
    token_lang = np.repeat(lang, sizes)
    for code_of_lang in range(len(LANGS)):
        where = is_word & (token_lang == code_of_lang)
        ids[where] = vocab.sample(rng, int(where.sum()), code_of_lang)
    return Corpus(vocab, ids, offsets, lang)


def make_queries(vocab: Vocab, n: int, seed: int = 0, *, skip: int = 0) -> list[list[str]]:
    """``n`` queries of 3-8 distinct terms from one language's distribution (ranks >= ``skip``);
    one query in ten ends with an error code."""
    rng = np.random.default_rng([seed, 2, skip])
    queries = []
    for _ in range(n):
        lang, size = int(rng.integers(0, 3)), int(rng.integers(QUERY_TERMS[0], QUERY_TERMS[1] + 1))
        ids = list(dict.fromkeys(vocab.sample(rng, 4 * size, lang, skip).tolist()))[:size]
        if rng.random() < 0.1:
            ids[-1] = VOCAB_TERMS + int(rng.integers(N_CODES))
        queries.append([vocab.terms[i] for i in ids])
    return queries


# ---- measuring -----------------------------------------------------------------------------------------
def _timed(search: Callable[[Q], R], queries: Sequence[Q], warmup: int = 3) -> tuple[dict[str, float], list[R]]:
    """p50/p99 milliseconds of ``search`` over ``queries`` after ``warmup`` unmeasured calls, and the results."""
    for query in queries[:warmup]:
        search(query)
    ms: list[float] = []
    results: list[R] = []
    for query in queries:
        start = time.perf_counter()
        results.append(search(query))
        ms.append((time.perf_counter() - start) * 1e3)
    p50, p99 = np.percentile(ms, [50, 99]).tolist()
    return {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}, results


def _status_mb(name: str) -> float | None:
    try:
        found = re.search(rf"^{name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


@contextmanager
def _build_meter(n_docs: int) -> Iterator[dict[str, Any]]:
    """Seconds, docs/s and peak RSS of the enclosed build, measured in this process.

    Writing "5" to /proc/self/clear_refs resets the kernel's VmHWM to the current RSS (Linux >= 4.0), so
    VmHWM afterwards is the process's peak *during* the build; memory held before it counts too (reported as
    ``rss_before_mb``). Where the reset is refused the figure is ``ru_maxrss``: the peak since process start.
    """
    gc.collect()
    before = _status_mb("VmRSS") or 0.0
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        method = "VmHWM reset before the build"
    except OSError:
        method = "ru_maxrss since process start"
    stats: dict[str, Any] = {}
    start = time.perf_counter()
    yield stats
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM") if method.startswith("VmHWM") else None
    peak = peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    stats.update(seconds=round(seconds, 2), docs_per_s=round(n_docs / seconds, 1), peak_rss_mb=round(peak))
    stats.update(rss_before_mb=round(before), peak_rss_method=method)


@dataclass(slots=True)
class Part:
    """One engine's figures: latency on query sets a and b, its build, its best row per set-a query."""

    a: dict[str, float]
    b: dict[str, float]
    build: dict[str, Any]
    top1: list[int]
    extra: dict[str, Any] = field(default_factory=dict)


def bench_sparse(tokens: list[list[str]], qa: list[list[str]], qb: list[list[str]]) -> Part:
    """Our serving-path scorer: ``SparseIndex.top_k`` on the generated tokens."""
    with _build_meter(len(tokens)) as build:
        index = SparseIndex.build(tokens, BM25Params())

    def search(query: list[str]) -> npt.NDArray[np.int64]:
        return index.top_k(query, K)[0]

    a, rows = _timed(search, qa)
    b, _ = _timed(search, qb)
    return Part(a, b, build, [int(r[0]) if r.size else -1 for r in rows])


def bench_rank_bm25(tokens: list[list[str]], qa: list[list[str]], qb: list[list[str]]) -> Part:
    """rank-bm25's ``BM25Okapi.get_scores`` plus a partial top-10 (ties: lower row first, as ours)."""
    from rank_bm25 import BM25Okapi

    with _build_meter(len(tokens)) as build:
        bm25 = BM25Okapi(tokens)

    def search(query: list[str]) -> npt.NDArray[np.int64]:
        scores: npt.NDArray[np.float64] = bm25.get_scores(query)
        top = np.argpartition(-scores, min(K, scores.size) - 1)[:K]  # -scores: see PERF-NOTES (argpartition)
        top = top[np.lexsort((top, -scores[top]))]
        return top[scores[top] > 0].astype(np.int64)

    a, rows = _timed(search, qa, warmup=1)
    b, _ = _timed(search, qb, warmup=1)
    return Part(a, b, build, [int(r[0]) if r.size else -1 for r in rows])


def bench_tantivy(tokens: list[list[str]], qa: list[list[str]], qb: list[list[str]]) -> Part:
    """tantivy (Rust, in-memory index): one "whitespace" text field with freqs, BM25 OR of term queries."""
    import tantivy

    schema_builder = tantivy.SchemaBuilder()
    schema_builder.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
    schema_builder.add_unsigned_field("row", stored=True)
    schema = schema_builder.build()
    with _build_meter(len(tokens)) as build:
        index = tantivy.Index(schema)
        writer = index.writer(heap_size=1_000_000_000)
        for row, doc in enumerate(tokens):
            writer.add_document(tantivy.Document(body=" ".join(doc), row=row))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
    searcher, should = index.searcher(), tantivy.Occur.Should

    def search(query: list[str]) -> list[Any]:
        clauses = [(should, tantivy.Query.term_query(schema, "body", term)) for term in query]
        return list(searcher.search(tantivy.Query.boolean_query(clauses), K, count=False).hits)

    a, hits = _timed(search, qa)
    b, _ = _timed(search, qb)
    return Part(a, b, build, [int(searcher.doc(h[0][1])["row"][0]) if h else -1 for h in hits])


class _TimedEmbedder:
    """An ``Embedder`` passing ``encode`` to a loaded model and counting texts and seconds (cache misses)."""

    def __init__(self, model: Any) -> None:
        self.model, self.texts, self.seconds = model, 0, 0.0
        self.dim: int = model.dim
        self.name: str = model.name
        self.cjk_capable: bool = model.cjk_capable

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> FloatArray:
        """The model's vectors for ``texts``."""
        start = time.perf_counter()
        vectors: FloatArray = self.model.encode(texts, batch_size=batch_size, progress=progress)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        return vectors


def bench_hybrid(corpus: Corpus, qa: list[str], qb: list[str], cfg: BenchConfig) -> Part:
    """The full engine in hybrid mode: query analysis and embedding, both sparse fields, dense, fusion.

    Document vectors come from the on-disk cache when present (cold on the first run), embedded with
    ``settings.embed_threads`` torch threads. Query vectors are always computed by the model, as a serving
    process does: with ``settings.query_threads`` (torch's thread count is per process, set at model load).
    """
    from eval.cache import CachedEmbedder
    from kb.config import Settings
    from kb.search.embed import SentenceTransformerEmbedder
    from kb.search.engine import SearchEngine
    from kb.text import detect_lang

    docs = corpus.documents()
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        cache_dir = cfg.cache_dir or Settings.from_env().cache_dir / "bench"  # apart from eval's cache
        settings = Settings.from_env(index_dir=Path(tmp), cache_dir=cache_dir)
        model = SentenceTransformerEmbedder(settings.embed_model, threads=settings.embed_threads)
        model.encode(["load the model before the build is timed"])
        timed = _TimedEmbedder(model)
        with CachedEmbedder(timed, settings.cache_dir) as cached, _build_meter(len(docs)) as build:
            engine = SearchEngine.build(docs, settings, embedder=cached, progress=cfg.progress)
    if settings.query_threads != settings.embed_threads:
        model = SentenceTransformerEmbedder(settings.embed_model, threads=settings.query_threads)
        model.encode(["load the query-time model"])
    engine.embedder = model
    a, hits = _timed(lambda q: engine.search(q, k=K, mode="hybrid"), qa, warmup=5)
    b, _ = _timed(lambda q: engine.search(q, k=K, mode="hybrid"), qb)
    engine_bm25, _ = _timed(lambda q: engine.search(q, k=K, mode="bm25"), qa)
    query_embed, _ = _timed(lambda q: model.encode([q]), qa)
    rate = round(timed.texts / timed.seconds, 1) if timed.texts else None
    embed: dict[str, Any] = dict(texts_encoded=timed.texts, seconds=round(timed.seconds, 1), texts_per_s=rate)
    embed.update(cache_hits=cached.hits, cache_dir=str(settings.cache_dir), threads=settings.embed_threads)
    embed["query_threads"] = settings.query_threads
    extra: dict[str, Any] = dict(engine_bm25=engine_bm25, query_embed=query_embed, embed=embed, dense=None)
    if engine.dense is not None:
        glossed = [engine.analyzer.embed_text(q) if detect_lang(q) != "en" else q for q in qa + qb]
        vectors = model.encode(glossed if engine.glossing else qa + qb)
        recall = round(engine.dense.recall_at_k(vectors, K), 4)
        extra["dense"] = dict(exact=engine.dense.exact, recall_at_10=recall, vectors=engine.dense.n_vectors)
    return Part(a, b, build, [int(h[0].doc_id[1:]) if h else -1 for h in hits], extra)


# ---- the run --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What ``run_bench`` measures; the CLI flags map onto these fields."""

    docs: int
    queries: int = 200
    seed: int = 0
    rank_bm25: bool = True
    embed: bool = True
    cache_dir: Path | None = None
    progress: bool = False


def rank_bm25_queries(n_docs: int, n_queries: int) -> int:
    """rank-bm25 runs fewer queries on big corpora (~2 s each at 1M): 10 at 1M, 100 at 100k."""
    return min(n_queries, max(10, 10_000_000 // max(n_docs, 1)))


def _agreement(ours: list[int], theirs: list[int]) -> float | None:
    """Share of the queries we answer whose best row is also the peer's best row."""
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=False) if a >= 0]
    return round(sum(a == b for a, b in pairs) / len(pairs), 3) if pairs else None


def _checks(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's floors, wherever both figures exist (they are stated for 1M and 100k docs)."""
    bm25, tantivy, rank, hybrid = (report[k] for k in ("bm25", "tantivy", "rank_bm25", "hybrid"))
    out: dict[str, Any] = {}
    if bm25 and tantivy:
        out["bm25_over_tantivy_p50"] = ratio = round(bm25["p50_ms"] / tantivy["p50_ms"], 2)
        out["bm25_within_1.5x_tantivy"] = ratio <= 1.5
    if bm25 and rank:
        out["rank_bm25_over_bm25_p50"] = speedup = round(rank["p50_ms"] / bm25["p50_ms"], 1)
        out["bm25_100x_rank_bm25"] = speedup >= 100
    if hybrid:
        out.update(hybrid_p50_le_20ms=hybrid["p50_ms"] <= 20, hybrid_p99_le_60ms=hybrid["p99_ms"] <= 60)
    return out


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Generate the corpus and queries, measure every enabled part, return the report (the --json line)."""
    vocab = make_vocab(cfg.seed)
    corpus = generate_corpus(cfg.docs, cfg.seed, vocab)
    qa, qb = make_queries(vocab, cfg.queries, cfg.seed), make_queries(vocab, cfg.queries, cfg.seed, skip=RARE_SKIP)
    n_rank = rank_bm25_queries(cfg.docs, cfg.queries) if cfg.rank_bm25 else 0
    parts: dict[str, Part] = {}
    load: dict[str, list[float]] = {}  # 1-minute load average before and after each part (ours included)
    skipped: dict[str, str] = {}

    def measure(name: str, run: Callable[[], Part]) -> None:
        before = os.getloadavg()[0]
        parts[name] = run()
        load[name] = [round(before, 2), round(os.getloadavg()[0], 2)]

    if not cfg.embed:
        skipped["hybrid"] = "--no-embed"
    elif cfg.docs > MAX_EMBED_DOCS:
        skipped["hybrid"] = f"over {MAX_EMBED_DOCS:,} docs: embedding them takes hours on this machine"
    else:  # first, while the process holds little else, so the build's peak RSS is mostly the engine's
        texts_a, texts_b = [" ".join(q) for q in qa], [" ".join(q) for q in qb]
        measure("hybrid", lambda: bench_hybrid(corpus, texts_a, texts_b, cfg))
    tokens = corpus.tokens()
    measure("bm25", lambda: bench_sparse(tokens, qa, qb))
    measure("tantivy", lambda: bench_tantivy(tokens, qa, qb))
    if cfg.rank_bm25:
        measure("rank_bm25", lambda: bench_rank_bm25(tokens, qa[:n_rank], qb[:n_rank]))
    else:
        skipped["rank_bm25"] = "--skip-rank-bm25"
    names = ("bm25", "rank_bm25", "tantivy", "hybrid")
    main_build = parts["hybrid" if "hybrid" in parts else "bm25"].build
    report: dict[str, Any] = {"docs": cfg.docs, **{n: parts[n].a if n in parts else None for n in names}}
    report["build"] = {k: main_build[k] for k in ("docs_per_s", "peak_rss_mb")}
    report["build"]["of"] = "engine incl. embedding" if "hybrid" in parts else "sparse index only"
    report["rare"] = {n: parts[n].b if n in parts else None for n in names}
    report["builds"] = {n: parts[n].build for n in names if n in parts}
    hybrid = parts["hybrid"].extra if "hybrid" in parts else {}
    report.update({key: hybrid.get(key) for key in ("dense", "embed", "engine_bm25", "query_embed")})
    report["agreement_top1"] = {
        n: _agreement(parts["bm25"].top1, parts[n].top1) for n in ("rank_bm25", "tantivy") if n in parts
    }
    report["checks"] = _checks(report)
    report["queries"] = dict(
        a=len(qa), b=len(qb), rank_bm25=n_rank, mean_terms_a=_mean_len(qa), mean_terms_b=_mean_len(qb)
    )
    report["corpus"] = dict(tokens=int(corpus.ids.size), seed=cfg.seed, hybrid_doc_tokens=HYBRID_TERMS)
    report.update(skipped=skipped, load=load, cores=os.cpu_count())
    return report


def _mean_len(queries: list[list[str]]) -> float:
    return round(sum(map(len, queries)) / max(len(queries), 1), 2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report (indented JSON, or exactly one line with --json)."""
    parser = argparse.ArgumentParser(prog="python -m eval.bench", description="Speed benchmark (eval/BENCH.md).")
    parser.add_argument("--docs", type=_positive_int, required=True, help="corpus size, e.g. 10000")
    parser.add_argument("--queries", type=_positive_int, default=200, help="queries per set (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and query seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the report as one line of JSON")
    parser.add_argument("--skip-rank-bm25", dest="rank_bm25", action="store_false", help="skip rank-bm25")
    parser.add_argument("--no-embed", dest="embed", action="store_false", help="skip the hybrid engine")
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default: <KB_CACHE_DIR>/bench)")
    options = vars(parser.parse_args(argv))
    as_json = options.pop("json")
    report = run_bench(BenchConfig(**options, progress=True))
    print(json.dumps(report, ensure_ascii=False, indent=None if as_json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
