"""What the lesson and case editors share: who is editing, the history page, and restoring
an old version as a draft. Each editor's views call these with their kind of content."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as WerkzeugResponse

from course.access import current_platform_id
from course.content import ContentError, effective_version, history, restore_as_draft
from course.database import db, utcnow
from course.errors import abort_with
from course.models import ContentVersion


class ActionForm(FlaskForm):
    """A button that only needs its CSRF token (restore, discard)."""


def author_name() -> str:
    """How the signed-in trainer is named in drafts and version history."""
    return str(getattr(current_user, "name", None) or getattr(current_user, "username", None) or "a trainer")


def history_page(kind: str, slug: str, template: str) -> str:
    """Every version of an item the trainer's tenant can see, with the one learners get now."""
    tenant = current_platform_id()
    versions = history(db.session, tenant, kind, slug)
    if not versions:
        abort_with(404, f"There is no {kind} with id {slug!r}.")
    return render_template(
        template, slug=slug, versions=versions, current=effective_version(db.session, tenant, kind, slug),
        form=ActionForm(), published=request.args.get("published"),
    )


def restore_version(kind: str, slug: str, version_id: int, *, edit_endpoint: str) -> WerkzeugResponse:
    """Start a draft from an old version and open it in the editor."""
    version = db.session.get(ContentVersion, version_id)
    if version is None:
        abort_with(404, "That version doesn't exist.")
    try:
        restore_as_draft(db.session, current_platform_id(), kind, slug, version, by=author_name(), now=utcnow())
    except ContentError as error:
        abort_with(404, str(error))
    db.session.commit()
    return redirect(url_for(edit_endpoint, slug=slug), code=303)
