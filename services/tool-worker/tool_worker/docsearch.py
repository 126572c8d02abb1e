"""`search_documents`: the user's own indexed documents, through the one search query the API
uses too (taskfleet.data.documents). Nothing is found until documents are uploaded and indexed."""

from typing import Any

from taskfleet.data.documents import search_documents as search
from taskfleet.data.toolspecs import SearchDocumentsArgs
from tool_worker.registry import ToolContext


async def search_documents(args: SearchDocumentsArgs, tctx: ToolContext) -> dict[str, Any]:
    """The `search_documents` tool: the caller's best-matching chunks, best first, each with
    its document, page, snippet and score."""
    # The user comes from the task row (the context), never from the model's arguments.
    hits = await search(tctx.db, tctx.user_id, args.query, limit=args.limit)
    return {
        "query": args.query,
        "results": [
            {"document_id": str(h.document_id), "title": h.title, "page": h.page,
             "snippet": h.snippet, "score": round(h.score, 4)}
            for h in hits
        ],
    }  # fmt: skip
