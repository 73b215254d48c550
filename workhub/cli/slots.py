"""`workhub slots`: register, list and inspect work slots."""

from __future__ import annotations

from datetime import date, timedelta

import typer
from rich.table import Table

from workhub.cli.common import console, fail, run_core, settings
from workhub.core import slots

app = typer.Typer(help="Work slots: add, list, show, deactivate.", no_args_is_help=True)


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be a date like 2024-01-31 (got {value!r}).")


@app.command("add")
def add(keyword: str = typer.Argument(..., help="Search keyword"),
        code: str = typer.Argument(..., help="Product code"),
        daily: int = typer.Option(..., "--daily", "-n", help="Successful checks per day"),
        start: str = typer.Option(None, help="First work date (default: today)"),
        end: str = typer.Option(None, help="Last work date, inclusive (default: start)"),
        site_id: int = typer.Option(None, "--site", help="Site id the slot belongs to"),
        external_ref: str = typer.Option(None, "--ref", help="Your id for the slot (idempotent create)"),
        cart_click: bool = typer.Option(False, "--cart-click", help="cart_click_enabled"),
        block_mercury: bool = typer.Option(False, "--block-mercury"),
        block_image_cdn: bool = typer.Option(False, "--block-image-cdn"),
        block_img1a_cdn: bool = typer.Option(False, "--block-img1a-cdn"),
        block_thumbnail_cdn: bool = typer.Option(False, "--block-thumbnail-cdn"),
        pace: str = typer.Option("asap", help="asap | even")):
    """Register a slot."""
    s = settings()
    start_date = _date(start, "--start") if start else s.work_date()
    end_date = _date(end, "--end") if end else start_date
    if not keyword.strip():
        fail("KEYWORD must not be empty.")
    if not code.strip():
        fail("CODE must not be empty.")
    if not 0 < daily <= 1_000_000:
        fail("--daily must be between 1 and 1000000.")
    if end_date < start_date:
        fail("--end must not be before --start.")
    if pace not in ("asap", "even"):
        fail("--pace must be asap or even.")
    fields = {"keyword": keyword, "code": code, "start_date": start_date, "end_date": end_date,
              "daily_work_count": daily, "cart_click_enabled": cart_click, "block_mercury": block_mercury,
              "block_image_cdn": block_image_cdn, "block_img1a_cdn": block_img1a_cdn,
              "block_thumbnail_cdn": block_thumbnail_cdn, "external_ref": external_ref, "pace": pace}
    slot, created = run_core(slots.create_slot, fields, site_id=site_id, actor="cli")
    verb = "Created" if created else "Already registered:"
    console.print(f"{verb} slot [bold]{slot['id']}[/] ({slot['keyword']} / {slot['code']}, "
                  f"{slot['daily_work_count']} a day, {slot['start_date']} .. {slot['end_date']}).")


@app.command("list")
def list_(site_id: int = typer.Option(None, "--site", help="Only this site's slots"),
          all_: bool = typer.Option(False, "--all", help="Include inactive slots"),
          limit: int = typer.Option(200, help="At most this many")):
    """List slots with today's progress."""
    s = settings()
    rows = run_core(slots.list_slots, site_id=site_id, work_date=s.work_date(), is_active=None if all_ else True,
                    limit=limit)
    table = Table("id", "site", "keyword", "code", "dates", "daily", "today", "active", title=f"Slots ({s.work_date()})")
    for r in rows:
        today = r["today"]
        progress = f"{today['success_count']}/{today['target_count']} ({today['completion_rate']}%)" if today else "-"
        table.add_row(str(r["id"]), str(r["external_site_id"] or "-"), r["keyword"], r["code"],
                      f"{r['start_date']} .. {r['end_date']}", str(r["daily_work_count"]), progress,
                      "yes" if r["is_active"] else "no")
    console.print(table if rows else "No slots.")


@app.command("show")
def show(slot_id: int = typer.Argument(..., help="Slot id"),
         days: int = typer.Option(7, help="Days of history to show")):
    """One slot: settings, daily ledger and rank history."""
    s = settings()
    if not 1 <= days <= 400:
        fail("--days must be between 1 and 400.")
    today = s.work_date()
    p = run_core(slots.slot_progress, s, slot_id, site_id=None, date_from=today - timedelta(days=days - 1),
                 date_to=today)
    slot = p["slot"]
    flags = [f for f in ("cart_click_enabled", "block_mercury", "block_image_cdn", "block_img1a_cdn",
                         "block_thumbnail_cdn") if slot[f]]
    console.print(f"[bold]Slot {slot['id']}[/]: {slot['keyword']} / {slot['code']}  "
                  f"site {slot['external_site_id'] or '-'}  ref {slot['external_ref'] or '-'}")
    console.print(f"  {slot['start_date']} .. {slot['end_date']}, {slot['daily_work_count']} a day, pace "
                  f"{slot['pace']}, {'active' if slot['is_active'] else 'inactive'}; settings: "
                  f"{', '.join(flags) or 'none'}")
    ranks = {r["work_date"]: r for r in p["rank_history"]}
    table = Table("date", "target", "success", "failed", "blocked", "in flight", "done %", "best rank", "avg rank")
    for d in p["days"]:
        r = ranks.get(d["work_date"], {})
        table.add_row(str(d["work_date"]), str(d["target_count"]), str(d["success_count"]), str(d["failed_count"]),
                      str(d["blocked_count"]), str(d["in_flight_count"]), str(d["completion_rate"]),
                      str(r.get("best_rank") or "-"), str(r.get("avg_rank") or "-"))
    console.print(table if p["days"] else "No ledger rows in this range yet.")


@app.command("deactivate")
def deactivate(slot_id: int = typer.Argument(..., help="Slot id")):
    """Stop handing a slot out (its history is kept)."""
    slot = run_core(slots.deactivate_slot, slot_id, site_id=None, actor="cli")
    console.print(f"Slot [bold]{slot['id']}[/] is now inactive; its history is kept.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="slots", help="Work slots.")
