"""A copyable eval: a toy RAG support bot, three scorers (one an LLM judge), one recorded run.

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-… JUDGE_MODEL=gpt-4o-mini \\
        python examples/support_bot_eval.py --warehouse warehouse
"""

import os
import sys

from evallib import Dataset, TaskResult, evaluate
from evallib.scorers import Judge, contains, judge_rubric, retrieval_metric

DOCS = {"kb-refund": "Refunds are paid within 30 days from Billing > Refunds.",
        "kb-password": "Reset your password with Forgot password on the login page.",
        "kb-export": "Export your data as CSV from Settings > Export."}

GOLDEN = Dataset("support-golden", [
    {"case_id": "refund", "input": "How do I get a refund?", "expected": "30 days",
     "strata": {"query_type": "billing"}, "tags": ["critical"], "relevant_docs": ["kb-refund"]},
    {"case_id": "password", "input": "I forgot my password", "expected": "Forgot password",
     "strata": {"query_type": "account"}, "relevant_docs": ["kb-password"]},
    {"case_id": "export", "input": "Can I export my data?", "expected": "CSV",
     "strata": {"query_type": "technical"}, "relevant_docs": ["kb-export"]},
])


def support_bot(question: str) -> TaskResult:
    """Retrieve by word overlap, answer with the top passage and cite it."""
    words = set(question.lower().strip("?").split())
    ranked = sorted(DOCS, key=lambda d: -len(words & set(DOCS[d].lower().split())))
    return TaskResult(f"{DOCS[ranked[0]]} [{ranked[0]}]", retrieved=ranked[:2],
                      cited=ranked[:1], context=[DOCS[d] for d in ranked[:2]],
                      tokens_in=120, tokens_out=25, cost_usd=0.0004)


LEVELS = {1: "contradicts the context", 2: "mostly unsupported", 3: "partly supported",
          4: "supported, minor gaps", 5: "every claim is in the context"}
judge = Judge(os.environ.get("JUDGE_MODEL", "gpt-4o-mini"))  # server: $OPENAI_BASE_URL
scorers = [contains(),  # the expected answer appears in the output
           retrieval_metric("recall", 2),
           judge_rubric(judge, {"faithfulness": {"question": "Is the answer grounded in the "
                                                 "retrieved context?", "levels": LEVELS}},
                        pass_at=4)]

if __name__ == "__main__":
    warehouse = sys.argv[sys.argv.index("--warehouse") + 1] if "--warehouse" in sys.argv else None
    result = evaluate(support_bot, GOLDEN, scorers, name="support-bot", model="toy-rag-1",
                      prompt_version="v1", warehouse=warehouse)
    print(result)
