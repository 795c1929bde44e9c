"""``kb ask``: the assistant from the command line, over the knowledge base in the database.

Answers as a customer would be answered (validated public articles only) unless ``--role`` says otherwise; prints
each sentence with its citation numbers, then the cited article versions (or the abstention and closest articles).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from kb.access import Principal
from kb.assistant import Answer, build_assistant
from kb.cli import make_embedder, settings_from_args
from kb.cli_db import open_database
from kb.errors import KBError
from kb.lifecycle import Role
from kb.live import LiveIndex


def _print(answer: Answer) -> None:
    if answer.status == "abstained":
        print(f"[abstained, support {answer.support:.2f}]")
    for note in answer.notes:
        print(f"  ({note})")
    for s in answer.sentences:
        print(f"{s.text} {''.join(f'[{n}]' for n in s.cites)}")
    if answer.citations:
        print("sources:")
        for c in answer.citations:
            print(f"  [{c.n}] {c.ref} v{c.version}  {c.title}")
    if answer.status == "abstained" and answer.closest:
        print("closest articles:")
        for a in answer.closest:
            print(f"  {a.ref} v{a.version}  {a.title}")
    if answer.fallback:
        print(f"(generator fell back to extractive: {answer.fallback})")


def cmd_ask(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    question = " ".join(args.question.split())
    if len(question) < 2:
        raise KBError("ask a question first")
    role = Role(args.role)
    # A customer principal needs an organisation; articles do not depend on it, and this principal has no cases.
    principal = Principal(None, role, org_id=0 if role in (Role.CUSTOMER, Role.PARTNER) else None)
    engine, factory = open_database(settings)
    try:
        live = LiveIndex.open(
            factory, settings, embedder=None if args.no_embed else make_embedder(settings, batch=False)
        )
        assistant = build_assistant(live, settings)
        with factory() as session:
            prepared = assistant.prepare(session, principal, question)
        answer = assistant.answer(prepared, generator="extractive" if args.extractive else "auto")
        if args.json:
            print(json.dumps(answer.as_dict(), ensure_ascii=False))
        else:
            _print(answer)
        if assistant.llm is not None:
            assistant.llm.close()
    finally:
        engine.dispose()
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    ask = sub.add_parser("ask", help="answer a question from the knowledge base, with cited article versions")
    ask.add_argument("question")
    ask.add_argument(
        "--role", default="customer", choices=[r.value for r in Role], help="whose permissions (default: customer)"
    )
    ask.add_argument("--extractive", action="store_true", help="never call the configured generator")
    ask.add_argument("--no-embed", action="store_true", help="retrieve with BM25 only (no model loaded)")
    ask.add_argument("--db", help="database URL (default: $KB_DATABASE_URL or sqlite:///.kb/kb.db)")
    ask.add_argument("--json", action="store_true", help="the answer as one JSON line")
    common(ask)
    ask.set_defaults(func=cmd_ask)
