"""The SQLite storage tests, run unchanged against PostgreSQL.

Each name below is a test function of tests/storage; collected here, its ``repo`` argument resolves to
tests/pg/conftest.py's PostgreSQL repository. Left out: tests of SQLite itself (WAL, BEGIN IMMEDIATE
cancellation, several connections to one file, reopening a file) — their PostgreSQL counterparts are in
test_pg_repository.py.
"""

from __future__ import annotations

import pytest

import tests.storage.test_guild_settings as guild_tests
from bot.storage.postgres import PostgresGuildSettings
from tests.storage.test_guild_settings import (  # noqa: F401 - collected by pytest
    test_a_new_server_has_every_default,
    test_re_adding_a_term_changes_its_mode,
    test_removing,
    test_settings_writes_interleave_safely_with_ledger_transactions,
    test_the_number_of_terms_is_capped,
    test_unknown_fields_are_refused,
    test_update_changes_only_what_it_names_and_none_means_default,
)
from tests.storage.test_job_lineage import (  # noqa: F401
    test_lineage_and_privacy_round_trip,
    test_mark_result_deleted_once,
    test_paging_queries_count_and_order,
)
from tests.storage.test_ledger_admin import (  # noqa: F401
    test_a_days_reset_does_not_carry_over,
    test_admission_runs_inside_the_reserving_transaction,
    test_allowance_zero_is_an_override_not_the_default,
    test_concurrent_requests_cannot_both_slip_under_the_limit,
    test_reset_day_leaves_open_reserves_alone,
    test_reset_day_only_touches_today,
    test_reset_day_restores_todays_allowance_with_the_actor,
    test_set_extra_accounts_for_spent_extra,
    test_set_extra_writes_the_difference_with_the_actor,
    test_user_activity_counts_unfinished_jobs_in_one_server,
)
from tests.storage.test_repository import (  # noqa: F401
    test_concurrent_reservations_on_one_repository_never_overspend,
    test_create_job_reserves_from_daily_then_extra,
    test_created_job_is_queued_and_round_trips,
    test_daily_pool_resets_the_next_utc_day,
    test_explicit_allowance_overrides_the_policy,
    test_insufficient_credits_writes_nothing_and_explains,
    test_recent_durations_are_the_models_successes_newest_first,
    test_settle_capture_exactly_once,
    test_settle_of_a_free_job_or_bad_kind,
    test_settle_refund_exactly_once_restores_the_balance,
    test_unknown_or_state_fields_are_refused,
)
from tests.storage.test_spending_caps import (  # noqa: F401
    test_a_servers_members_together_cannot_pass_its_daily_cap,
    test_cancel_is_fenced_by_state_and_lease,
    test_concurrent_reserves_never_pass_the_server_cap,
    test_refunds_give_the_budget_back_and_the_next_day_starts_afresh,
    test_the_global_cap_counts_every_server,
)


@pytest.fixture(autouse=True)
def _postgres_guild_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guild tests build ``GuildSettingsRepository(repo)``: give them the PostgreSQL class instead."""
    monkeypatch.setattr(guild_tests, "GuildSettingsRepository", PostgresGuildSettings)
