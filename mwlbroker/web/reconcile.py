"""Patient identity reconciliation pages: ID collisions, likely duplicates, exams without an
order, and the merges done (with undo).

Viewers read; admins act. Every action is a POST with the form's CSRF token and ends in a
flashed outcome; a merge goes through a confirmation page first (no script: the page's
Content-Security-Policy forbids inline script). The use cases live in
:class:`~mwlbroker.services.reconciliation.ReconciliationService`; the shapes built here
(:func:`duplicate_pairs`, :func:`waiting_exams`) are what the JSON API answers too.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from mwlbroker.services import views
from mwlbroker.services.reconciliation import (
    ReconciliationRefused,
    ReconciliationService,
    UndoRefused,
)
from mwlbroker.store import reconciliation as rec
from mwlbroker.store import worklist
from mwlbroker.web import web
from mwlbroker.web.auth import admin_required, login_required

blueprint = Blueprint("reconcile", __name__)

LIST_LIMIT = 200  # the longest list a page shows; reconciliation queues are short when kept up


def service() -> ReconciliationService:
    """The reconciliation service, or 404 where the application was built without one."""
    found = web().reconciliation
    if found is None:
        abort(404)
    return found


# -- shapes shared with the JSON API -------------------------------------------------------------


def duplicate_pairs(limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """The stored candidate pairs, best first, each patient with their steps (orders)."""
    pairs = [asdict(c) for c in service().duplicates(limit=limit)]
    pks = [p[side]["pk"] for p in pairs for side in ("first", "second")]
    with web().db.reading() as session:
        steps: dict[int, list[dict[str, Any]]] = {}
        for row in rec.steps_of_patients(session, pks):
            steps.setdefault(row.patient_pk, []).append(views.step_summary(row))
    for pair in pairs:
        for side in ("first", "second"):
            pair[side]["steps"] = steps.get(pair[side]["pk"], [])
    return pairs


def waiting_exams(limit: int = LIST_LIMIT) -> dict[str, list[dict[str, Any]]]:
    """Unscheduled performed steps and unmatched studies, each with the steps it may belong to
    (same Patient ID or Accession Number)."""
    reconciliation = service()
    found = {
        "mpps": reconciliation.unscheduled_mpps(limit=limit),
        "studies": reconciliation.unmatched_studies(limit=limit),
    }
    with web().db.reading() as session:
        for exams in found.values():
            for exam in exams:
                rows = rec.steps_naming(session, exam["patient_id"], exam["accession_number"])
                exam["candidate_steps"] = [views.step_summary(row) for row in rows]
    return found


def patient_detail(pk: int) -> dict[str, Any]:
    """A patient and their steps, for the merge confirmation; 404 when there is none."""
    with web().db.reading() as session:
        row = worklist.get_patient(session, pk)
        if row is None:
            abort(404)
        detail = views.patient_summary(row)
        detail["steps"] = [views.step_summary(s) for s in rec.steps_of_patients(session, [pk])]
    return detail


def step_ids(values: list[str]) -> list[int]:
    """Step ids from checked boxes and a typed list ("12, 13"); ValueError names a bad one."""
    found: list[int] = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit():
                raise ValueError(f"{part!r} is not a step id (a number)")
            found.append(int(part))
    return list(dict.fromkeys(found))


def _form_pk(name: str) -> int:
    value = request.form.get(name, request.args.get(name, "")).strip()
    if not value.isdigit():
        abort(400, f"{name} must be a patient number")
    return int(value)


# -- pages -----------------------------------------------------------------------------------------


@blueprint.get("/")
@login_required
def index() -> Any:
    return redirect(url_for("reconcile.duplicates"))


@blueprint.get("/collisions")
@login_required
def collisions() -> Any:
    found = service().collisions(limit=LIST_LIMIT)
    return render_template("reconcile_collisions.html", collisions=found, section="collisions")


@blueprint.get("/duplicates")
@login_required
def duplicates() -> Any:
    return render_template(
        "reconcile_duplicates.html", pairs=duplicate_pairs(), section="duplicates"
    )


@blueprint.post("/duplicates/sweep")
@admin_required
def sweep() -> Any:
    done = service().sweep_duplicates()
    flash(
        f"Duplicate sweep: {done.patients} patient(s) compared, "
        f"{done.candidates} likely duplicate pair(s) found in {done.seconds:.2f} s.",
        "ok",
    )
    return redirect(url_for("reconcile.duplicates"))


@blueprint.get("/merge")
@admin_required
def confirm_merge() -> Any:
    """Step one of a merge: show what moves where, ask to confirm (and whether to tell the RIS)."""
    survivor = _form_pk("survivor")
    if "prior" in request.args:
        prior = _form_pk("prior")
    else:  # from a pair on the duplicates page: the one not chosen to survive goes
        first, second = _form_pk("first"), _form_pk("second")
        if survivor not in (first, second):
            abort(400, "the survivor must be one of the pair")
        prior = second if survivor == first else first
    if prior == survivor:
        flash("Choose two different patients to merge.", "error")
        return redirect(url_for("reconcile.duplicates"))
    return render_template(
        "reconcile_merge.html",
        prior=patient_detail(prior),
        survivor=patient_detail(survivor),
        destinations=web().destinations,
        section="duplicates",
    )


@blueprint.post("/merge")
@admin_required
def merge() -> Any:
    prior, survivor = _form_pk("prior"), _form_pk("survivor")
    if request.form.get("confirm") != "yes":
        flash("The merge was not confirmed: nothing changed.", "error")
        return redirect(url_for("reconcile.confirm_merge", prior=prior, survivor=survivor))
    notify = request.form.get("notify_ris") == "yes"
    try:
        done = service().merge(prior, survivor, actor=current_user.name, notify_ris=notify)
    except LookupError:
        abort(404)
    except ReconciliationRefused as refused:
        flash(f"Not merged: {refused}", "error")
        return redirect(url_for("reconcile.duplicates"))
    told = f"; ADT^A40 queued for the RIS ({len(done.notified)})" if done.notified else ""
    flash(
        f"Merge {done.merge_id}: {done.prior.label} ({done.prior.name}) merged into "
        f"{done.survivor.label} ({done.survivor.name}): {len(done.orders)} order(s), "
        f"{len(done.steps)} step(s) moved{told}.",
        "ok",
    )
    return redirect(url_for("reconcile.merges"))


@blueprint.post("/dismiss")
@admin_required
def dismiss() -> Any:
    first, second = _form_pk("first"), _form_pk("second")
    note = request.form.get("note", "").strip()[:500]
    try:
        service().dismiss(first, second, actor=current_user.name, note=note)
    except LookupError:
        abort(404)
    except ReconciliationRefused as refused:
        flash(f"Not dismissed: {refused}", "error")
    else:
        flash(
            f"Patients {first} and {second} are remembered as not the same person: "
            "the sweep leaves them be.",
            "ok",
        )
    return redirect(url_for("reconcile.duplicates"))


@blueprint.get("/exams")
@login_required
def exams() -> Any:
    return render_template("reconcile_exams.html", exams=waiting_exams(), section="exams")


def _link_outcome(done: Any, what: str) -> None:
    changes = ", ".join(f"step {step} {before} -> {after}" for step, before, after in done.changes)
    flash(
        f"{what} linked to step(s) {', '.join(map(str, done.step_ids))}"
        + (f": {changes}." if changes else "; no step status changed."),
        "ok",
    )


@blueprint.post("/mpps/<int:performed_id>/link")
@admin_required
def link_mpps(performed_id: int) -> Any:
    try:
        steps = step_ids([*request.form.getlist("step_id"), request.form.get("step_ids", "")])
        done = service().link_mpps(performed_id, steps, actor=current_user.name)
    except (ValueError, LookupError, ReconciliationRefused) as refused:
        flash(f"Not linked: {refused}", "error")
    else:
        _link_outcome(done, f"Performed step {performed_id}")
    return redirect(url_for("reconcile.exams"))


@blueprint.post("/studies/<int:study_id>/link")
@admin_required
def link_study(study_id: int) -> Any:
    try:
        steps = step_ids([request.form.get("step_id", ""), request.form.get("step_ids", "")])
        if len(steps) != 1:
            raise ValueError("choose exactly one step for a study")
        done = service().link_study(study_id, steps[0], actor=current_user.name)
    except (ValueError, LookupError, ReconciliationRefused) as refused:
        flash(f"Not linked: {refused}", "error")
    else:
        _link_outcome(done, f"Study {study_id}")
    return redirect(url_for("reconcile.exams"))


@blueprint.get("/merges")
@login_required
def merges() -> Any:
    found = service().merges(limit=LIST_LIMIT)
    return render_template("reconcile_merges.html", merges=found, section="merges")


@blueprint.post("/merges/<int:merge_id>/undo")
@admin_required
def undo(merge_id: int) -> Any:
    try:
        done = service().undo_merge(merge_id, actor=current_user.name)
    except LookupError:
        abort(404)
    except UndoRefused as refused:
        flash(f"Merge {merge_id} was not undone, and nothing changed, because:", "error")
        for problem in refused.problems:
            flash(problem, "error reason")
    except ReconciliationRefused as refused:
        flash(f"Merge {merge_id} was not undone: {refused}", "error")
    else:
        flash(
            f"Merge {merge_id} undone: {len(done.orders)} order(s), {len(done.steps)} step(s) "
            f"back with {done.prior.label} ({done.prior.name}).",
            "ok",
        )
        for note in done.notes:
            flash(note, "info")
    return redirect(url_for("reconcile.merges"))
