"""Pricing a verification job from the providers' tariffs, and the budget's ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qrelease.model.environment import QuantumBudget
from qrelease.model.events import Event
from qrelease.quantum.pricing import SpendLedger, cost_rows, gate_counts, price_job

Q0, Q1 = "%Qubit* inttoptr (i64 0 to %Qubit*)", "%Qubit* inttoptr (i64 1 to %Qubit*)"
R0, R1 = "%Result* inttoptr (i64 0 to %Result*)", "%Result* inttoptr (i64 1 to %Result*)"
BELL_QIR = f"""
  call void @__quantum__qis__h__body({Q0})
  call void @__quantum__qis__cx__body({Q0}, {Q1})
  call void @__quantum__qis__m__body({Q0}, {R0})
  call void @__quantum__qis__m__body({Q1}, {R1})
  call void @__quantum__rt__result_record_output({R0}, i8* null)
attributes #0 = {{ "entry_point" "required_num_qubits"="2" }}
"""
TOFFOLI = "call void @__quantum__qis__ccx__body(ptr null, ptr inttoptr (i64 1 to ptr), ptr %q)"


def test_gates_are_counted_as_the_tariffs_count_them() -> None:
    assert gate_counts(BELL_QIR).one_qubit == 1
    assert gate_counts(BELL_QIR).two_qubit == 1
    assert gate_counts(BELL_QIR).measurements == 2  # output recording is not an operation
    assert gate_counts(TOFFOLI).two_qubit == 6  # IonQ bills a 3-qubit gate as 6·(3−2)
    assert gate_counts("call void @__quantum__qis__rx__body(double 0.5, %Qubit* null)").one_qubit


def test_ionq_aria_with_its_error_mitigation_minimum() -> None:
    price = price_job("ionq.qpu.aria-1", BELL_QIR, 1000)
    assert price.amount == pytest.approx(97.50 + 0.000220 * 1000 + 0.000975 * 1000)
    assert price.currency == "USD" and price.text == "USD 98.695"
    assert "97.5 (minimum with error mitigation)" in price.formula
    forte = price_job("ionq.qpu.forte-enterprise-1", BELL_QIR, 1000)
    assert forte.amount == pytest.approx(168.195 + 0.1645 + 1.121)
    assert price_job("ionq.simulator", BELL_QIR, 1000).amount == 0.0


def test_quantinuum_counts_hqcs_and_needs_the_contracts_price() -> None:
    # HQC = 5 + C·(N1 + 10·N2 + 5·Nm)/5000; Nm = 2 measurements + 2 initial preparations
    unpriced = price_job("quantinuum.qpu.h2-1", BELL_QIR, 1000)
    assert unpriced.hqc == pytest.approx(5 + 1000 * (1 + 10 + 5 * 4) / 5000)
    assert unpriced.amount is None and "usd_per_hqc" in unpriced.unknown
    priced = price_job("quantinuum.qpu.h2-1", BELL_QIR, 1000, usd_per_hqc=10)
    assert priced.amount == pytest.approx(10 * 11.2)
    assert price_job("quantinuum.sim.h2-1sc", BELL_QIR, 1000).amount == 0.0


def test_time_billed_targets_cannot_be_priced_before_they_run() -> None:
    price = price_job("rigetti.qpu.cepheus-1-108q", BELL_QIR, 1000)
    assert price.amount is None and "per 10 ms of execution time" in price.unknown
    assert price_job("rigetti.sim.qvm", BELL_QIR, 1000).amount == 0.0


def test_the_ledger_refuses_over_either_limit_and_unknown_prices() -> None:
    aria = price_job("ionq.qpu.aria-1", BELL_QIR, 1000)
    per_job = SpendLedger(QuantumBudget(per_job=50))
    assert "over the per-job budget of USD 50.00" in (per_job.reserve(aria) or "")
    monthly = SpendLedger(QuantumBudget(per_month=250), spent=60.0, month="2026-12")
    assert monthly.reserve(aria) is None  # 60 + 98.695
    refusal = monthly.reserve(aria)  # 60 + 2 x 98.695 > 250
    assert refusal is not None and "spend to USD 257.39" in refusal and "2026-12" in refusal
    monthly.release(aria)  # a job that was never submitted gives its reservation back
    assert monthly.reserve(price_job("ionq.simulator", BELL_QIR, 1000)) is None
    unknown = price_job("rigetti.qpu.cepheus-1-108q", BELL_QIR, 1000)
    assert "cannot be known before submitting" in (per_job.reserve(unknown) or "")
    euros = SpendLedger(QuantumBudget(per_job=500, currency="EUR"))
    assert "priced in USD, the budget is in EUR" in (euros.reserve(aria) or "")
    with pytest.raises(ValueError, match="per_job, per_month or both"):
        QuantumBudget()


def event(seq: int, env: str, details: dict[str, object], when: datetime) -> Event:
    return Event(
        seq=seq,
        time=when,
        prev_hash="0" * 64,
        hash="0" * 64,
        env=env,
        app="bell-service",
        action="gate",
        details={"gate": "verification", **details},
    )


def test_cost_rows_sum_by_environment_app_and_month() -> None:
    price = {"amount": 98.695, "currency": "USD"}
    reported = {"estimatedTotal": 100.0, "currencyCode": "USD"}
    events = [
        event(1, "dev", {"job_id": "a", "price": price, "cost_estimate": reported},
              datetime(2026, 11, 30, 23, tzinfo=UTC)),
        event(2, "dev", {"job_id": "b", "price": price}, datetime(2026, 12, 1, 1, tzinfo=UTC)),
        event(3, "dev", {"refused": True, "price": price}, datetime(2026, 12, 2, tzinfo=UTC)),
        event(4, "dev", {"skipped": True}, datetime(2026, 12, 2, tzinfo=UTC)),
    ]  # fmt: skip
    november, december = cost_rows(events)
    assert (november.month, november.jobs, november.reported) == ("2026-11", 1, 100.0)
    assert (december.month, december.jobs, december.refused) == ("2026-12", 1, 1)
    assert december.priced == pytest.approx(98.695) and december.reported == 0.0
