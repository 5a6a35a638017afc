"""What a verification job costs before it is submitted, and whether the budget allows it.

The Azure Quantum SDK no longer estimates a job's cost, so qrelease prices the compiled
program itself from each provider's published tariff (the Azure Quantum pricing page,
MicrosoftDocs/quantum-docs articles/pricing.md at commit bdaf622, checked 2026-12-03):

- **IonQ**: AQT = m + r₁·N₁·C + r₂·N₂·C in USD, with N₁ and N₂ the one- and two-qubit
  gates, C the shots, and m the minimum per program (Aria 1: USD 97.50 with error
  mitigation, which is on by default; Forte: USD 168.195). A gate on N ≥ 3 qubits is
  billed as 6·(N−2) two-qubit gates. The page writes the minimum as an added term while
  calling it a minimum; qrelease adds it, which can only over-state the price.
- **Quantinuum**: HQC = 5 + C·(N₁ + 10·N₂ + 5·Nₘ)/5000, with Nₘ the state preparations
  and measurements. HQCs are sold by subscription, so their USD price is the
  environment's to state (`policy.quantum_budget.usd_per_hqc`); syntax checkers are free.
- **Rigetti** bills USD 0.02 per 10 ms of execution time and **Pasqal** EUR 3,000 per
  QPU hour: neither can be known before the job has run. Their simulators are free.

Counts come from the QIR the gates compiled: every operation in the program text counts
once, which is exact for Base-profile programs (no branches) and an estimate for adaptive
ones. A job whose price cannot be known is refused where a budget applies: a guardrail
that lets unknown spending through is not one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any, Protocol, runtime_checkable

from qrelease.model.environment import QuantumBudget
from qrelease.model.events import Event
from qrelease.quantum.base import QuantumBackend

CHECKED = date(2026, 12, 3)
SOURCE = (
    "https://learn.microsoft.com/azure/quantum/pricing "
    "(MicrosoftDocs/quantum-docs@bdaf622, articles/pricing.md, ms.date 2025-09-17)"
)
_CALL = re.compile(r"call \w+ @__quantum__qis__(\w+?)__(?:body|adj|ctl)\((.*)\)\s*$", re.M)
_QUBIT_ARG = re.compile(r"(?:%Qubit\*|\bptr)\s+(?:null|inttoptr|%)")
_MEASURES = frozenset({"m", "mz", "mresetz"})
_PREPARES = frozenset({"reset"})


@dataclass(frozen=True)
class GateCounts:
    """Operations in a compiled program, as the tariffs count them.

    >>> qir = "call void @__quantum__qis__cx__body(%Qubit* null, %Qubit* %q1)"
    >>> gate_counts(qir + '\\n"required_num_qubits"="2"')
    GateCounts(one_qubit=0, two_qubit=1, measurements=0, qubits=2)
    """

    one_qubit: int
    two_qubit: int
    measurements: int
    qubits: int


def money(amount: float) -> str:
    """An amount with 2 to 4 decimals, as the tariffs write them.

    >>> money(97.5), money(98.695), money(12.41664)
    ('97.50', '98.695', '12.4166')
    """
    text = f"{amount:,.4f}".rstrip("0")
    decimals = len(text.partition(".")[2])
    return text + "0" * max(0, 2 - decimals)


def gate_counts(qir: str) -> GateCounts:
    """One- and two-qubit gates (an N-qubit gate as 6·(N−2) two-qubit ones) and measurements."""
    one = two = measures = 0
    for name, arguments in _CALL.findall(qir):
        width = len(_QUBIT_ARG.findall(arguments))
        if name in _MEASURES or name in _PREPARES:
            measures += 1
        elif width == 1:
            one += 1
        elif width == 2:
            two += 1
        elif width >= 3:
            two += 6 * (width - 2)
    qubits = re.search(r'"required_num_qubits"="(\d+)"', qir)
    return GateCounts(one, two, measures, int(qubits.group(1)) if qubits else 0)


@dataclass(frozen=True)
class Price:
    """A job's price before submission, or why it cannot be known."""

    target: str
    amount: float | None
    currency: str
    formula: str
    counts: GateCounts
    shots: int
    hqc: float | None = None
    unknown: str = ""

    @property
    def text(self) -> str:
        """`USD 98.695` (or `unknown`)."""
        return "unknown" if self.amount is None else f"{self.currency} {money(self.amount)}"

    def as_json(self) -> dict[str, Any]:
        """The price with its formula, counts, source and date, for the gate's details."""
        return {
            "target": self.target,
            "amount": self.amount,
            "currency": self.currency,
            "formula": self.formula,
            "hqc": self.hqc,
            "shots": self.shots,
            "one_qubit_gates": self.counts.one_qubit,
            "two_qubit_gates": self.counts.two_qubit,
            "measurements": self.counts.measurements,
            "unknown": self.unknown or None,
            "source": SOURCE,
            "checked": CHECKED.isoformat(),
        }


@dataclass(frozen=True)
class _IonQRate:
    one_qubit: float
    two_qubit: float
    minimum: float


_IONQ = {
    "ionq.qpu.aria-1": _IonQRate(0.000220, 0.000975, 97.50),
    "ionq.qpu.forte-1": _IonQRate(0.0001645, 0.001121, 168.195),
    "ionq.qpu.forte-enterprise-1": _IonQRate(0.0001645, 0.001121, 168.195),
}
_FREE = {
    "ionq.simulator": "the IonQ simulator is free",
    "rigetti.sim.qvm": "the Rigetti QVM is free",
}


def price_job(target: str, qir: str, shots: int, *, usd_per_hqc: float | None = None) -> Price:
    """The price of running `qir` for `shots` on `target`, from the provider's tariff.

    >>> qir = "call void @__quantum__qis__h__body(%Qubit* null)"
    >>> price_job("ionq.qpu.aria-1", qir, 100).amount
    97.522
    >>> price_job("rigetti.qpu.cepheus-1-108q", qir, 100).amount is None
    True
    """
    counts = gate_counts(qir)
    if target in _FREE or (target.startswith("quantinuum.sim.") and target.endswith("sc")):
        reason = _FREE.get(target, "Quantinuum syntax checkers are free")
        return Price(target, 0.0, "USD", reason, counts, shots)
    if target in _IONQ:
        return _ionq(target, _IONQ[target], counts, shots)
    if target.startswith("quantinuum."):
        return _quantinuum(target, counts, shots, usd_per_hqc)
    why = {
        "rigetti": "Rigetti bills USD 0.02 per 10 ms of execution time, known only after the job",
        "pasqal": "Pasqal bills EUR 3,000 per QPU hour of execution time, known only after the job",
    }.get(target.split(".", 1)[0], f"the pricing table has no tariff for {target}")
    return Price(target, None, "", "", counts, shots, unknown=why)


def _ionq(target: str, rate: _IonQRate, counts: GateCounts, shots: int) -> Price:
    gates = rate.one_qubit * counts.one_qubit * shots + rate.two_qubit * counts.two_qubit * shots
    amount = round(rate.minimum + gates, 4)
    formula = (
        f"{rate.minimum:g} (minimum with error mitigation) + {rate.one_qubit:g}·{counts.one_qubit}"
        f"·{shots} + {rate.two_qubit:g}·{counts.two_qubit}·{shots} = USD {money(amount)}"
    )
    return Price(target, amount, "USD", formula, counts, shots)


def _quantinuum(target: str, counts: GateCounts, shots: int, usd_per_hqc: float | None) -> Price:
    spam = counts.measurements + counts.qubits  # each qubit's initial preparation counts too
    hqc = round(5 + shots * (counts.one_qubit + 10 * counts.two_qubit + 5 * spam) / 5000, 4)
    unit = "eHQC" if ".sim." in target else "HQC"
    formula = (
        f"5 + {shots}·({counts.one_qubit} + 10·{counts.two_qubit} + 5·{spam})/5000 = {hqc:g} {unit}"
    )
    if usd_per_hqc is None:
        why = f"{unit}s are sold by subscription; set policy.quantum_budget.usd_per_hqc"
        return Price(target, None, "", formula, counts, shots, hqc=hqc, unknown=why)
    amount = round(hqc * usd_per_hqc, 4)
    formula += f" x USD {usd_per_hqc:g} = USD {money(amount)}"
    return Price(target, amount, "USD", formula, counts, shots, hqc=hqc)


def spend_of(details: Mapping[str, Any]) -> tuple[float, str] | None:
    """What a recorded verification job cost: the service's cost estimate when it reported
    one, else qrelease's price; None for a job that was never submitted.

    >>> spend_of({"job_id": "j", "price": {"amount": 97.5, "currency": "USD"}})
    (97.5, 'USD')
    >>> spend_of({"job_id": "j", "cost_estimate": {"estimatedTotal": 101.2, "currencyCode": "USD"}})
    (101.2, 'USD')
    >>> spend_of({"refused": True, "price": {"amount": 97.5, "currency": "USD"}}) is None
    True
    """
    if not details.get("job_id"):
        return None
    reported = details.get("cost_estimate")
    if isinstance(reported, Mapping) and isinstance(reported.get("estimatedTotal"), int | float):
        return float(reported["estimatedTotal"]), str(reported.get("currencyCode") or "USD")
    price = details.get("price")
    if isinstance(price, Mapping) and isinstance(price.get("amount"), int | float):
        return float(price["amount"]), str(price.get("currency") or "USD")
    return None


@dataclass
class SpendLedger:
    """An environment's quantum budget for one pass: what this month spent, and what the
    pass's jobs reserve as they are priced (several may be priced side by side)."""

    budget: QuantumBudget
    spent: float = 0.0
    month: str = ""
    reserved: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self, price: Price) -> str | None:
        """Why the job may not be submitted (None: it may, and its price is reserved)."""
        budget = self.budget
        if price.amount is None:
            return f"its price cannot be known before submitting: {price.unknown}"
        if price.amount and price.currency != budget.currency:
            return f"it is priced in {price.currency}, the budget is in {budget.currency}"
        with self._lock:
            if budget.per_job is not None and price.amount > budget.per_job:
                return (
                    f"price {price.text} ({price.formula}) is over the per-job budget of"
                    f" {budget.currency} {money(budget.per_job)}"
                )
            total = self.spent + self.reserved + price.amount
            if budget.per_month is not None and total > budget.per_month:
                return (
                    f"price {price.text} would bring {self.month or 'this month'}'s spend to"
                    f" {budget.currency} {money(total)}, over the monthly budget of"
                    f" {budget.currency} {money(budget.per_month)}"
                    f" ({budget.currency} {money(self.spent + self.reserved)} spent or reserved)"
                )
            self.reserved += price.amount
        return None

    def release(self, price: Price) -> None:
        """Give back a reservation whose job was never submitted."""
        with self._lock:
            self.reserved = max(0.0, self.reserved - (price.amount or 0.0))

    def as_json(self) -> dict[str, Any]:
        """The budget and this month's figures, for the gate's details."""
        return {
            **self.budget.model_dump(mode="json"),
            "month": self.month,
            "spent_this_month": round(self.spent, 4),
        }


@runtime_checkable
class BudgetAware(Protocol):
    """A backend that submits billed jobs and can price them against a budget first."""

    def with_budget(self, ledger: SpendLedger) -> QuantumBackend:
        """The backend, checking each job's price against `ledger` before submitting it."""
        ...


@dataclass
class CostRow:
    """Verification jobs of one app in one environment in one month, and what they cost."""

    env: str
    app: str
    month: str
    currency: str
    jobs: int = 0
    refused: int = 0
    priced: float = 0.0
    reported: float = 0.0
    unpriced: int = 0

    def as_json(self) -> dict[str, Any]:
        """The row for `qrelease cost --json`."""
        return {
            "env": self.env,
            "app": self.app,
            "month": self.month,
            "currency": self.currency,
            "jobs": self.jobs,
            "refused": self.refused,
            "priced": round(self.priced, 4),
            "reported": round(self.reported, 4),
            "unpriced": self.unpriced,
        }


def cost_rows(events: Iterable[Event]) -> list[CostRow]:
    """Spend by environment, app and month (UTC) from recorded verification gate events.

    `priced` is what qrelease computed before submitting; `reported` the service's
    `cost_estimate` of the jobs that ran; `refused` counts jobs the budget stopped.
    """
    rows: dict[tuple[str, str, str, str], CostRow] = {}
    for event in events:
        details = event.details
        if event.action != "gate" or details.get("gate") != "verification":
            continue
        price = details.get("price")
        if not isinstance(price, Mapping):
            continue  # skipped, or recorded before qrelease priced jobs
        month = event.time.astimezone(UTC).strftime("%Y-%m")
        currency = str(price.get("currency") or "USD")
        key = (event.env or "", event.app or "", month, currency)
        row = rows.setdefault(key, CostRow(*key))
        if details.get("refused"):
            row.refused += 1
            continue
        if not details.get("job_id"):
            continue  # never submitted (the service could not be reached)
        row.jobs += 1
        amount = price.get("amount")
        if isinstance(amount, int | float):
            row.priced += float(amount)
        else:
            row.unpriced += 1
        reported = details.get("cost_estimate")
        if isinstance(reported, Mapping) and isinstance(
            reported.get("estimatedTotal"), int | float
        ):
            row.reported += float(reported["estimatedTotal"])
    return [rows[key] for key in sorted(rows)]
