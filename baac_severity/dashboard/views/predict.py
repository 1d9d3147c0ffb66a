"""Page "Predict" of the dashboard (``make dashboard``, top navigation): one accident, every
field of the request (``serving.schemas``: the accident's fields in groups, then each vehicle's
and each road user's), starting from a real accident
(``serving/predict_request.json``), scored by the running service with its explanation."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st

from baac_severity.dashboard import formatting as fmt
from baac_severity.data.schema import ACTP_CODES, CODES, MEASURE_RANGES
from baac_severity.serving import client as pc
from baac_severity.serving.schemas import (
    ACCIDENT_SPECS,
    FIELD_LABELS,
    MAX_USERS,
    MAX_VEHICLES,
    USER_SPECS,
    VEHICLE_SPECS,
    FieldSpec,
)

# The accident's fields, grouped as a person describes an accident; a field of the request
# that no group names lands in "Other" (tests/test_dashboard.py checks that none does today).
GROUPS = {
    "When": ["an", "mois", "jour", "hrmn"],
    "Where": ["dep", "com", "lat", "long", "agg"],
    "Conditions": ["lum", "atm", "int", "col", "surf"],
    "Road": ["catr", "circ", "nbv", "vosp", "prof", "plan", "infra", "situ", "vma"],
    "Identifier": ["num_acc"],
}
COLUMNS_PER_GROUP = 3
COLUMNS_PER_PART = 5
NOT_FILLED = "not filled in"


def grouped_fields() -> dict[str, list[FieldSpec]]:
    """The accident-level request fields by group, in the request's order within a group."""
    specs = {spec.name: spec for spec in ACCIDENT_SPECS}
    groups = {group: [specs[name] for name in names] for group, names in GROUPS.items()}
    named = {name for names in GROUPS.values() for name in names}
    other = [spec for spec in ACCIDENT_SPECS if spec.name not in named]
    return groups | ({"Other": other} if other else {})


def code_text(field: str, code: Any) -> str:
    if code is None or (isinstance(code, float) and pd.isna(code)):
        return NOT_FILLED
    table = ACTP_CODES if field == "actp" else CODES[field]
    return f"{code} – {table.get(code, 'unknown code')}"


def field_input(spec: FieldSpec, default: Any, where: Any, key: str) -> Any:
    """One widget for one request field, in the field's type; None means not filled in."""
    name, title = spec.name, f"{FIELD_LABELS[spec.name]} ({spec.name})"
    if name in CODES or name == "actp":
        codes = list(ACTP_CODES if name == "actp" else CODES[name])
        options = codes if spec.required else [None, *codes]
        index = options.index(default) if default in options else 0
        return where.selectbox(
            title, options, index=index, format_func=lambda c: code_text(name, c), key=key
        )
    if name in ("lat", "long"):
        value = float(default) if isinstance(default, int | float) else None
        return where.number_input(title, value=value, format="%.5f", key=key)
    if name in MEASURE_RANGES or name in ("an", "mois", "jour"):
        value = int(default) if isinstance(default, int | float) else None
        if spec.required and value is None:
            value = pc.FORM_DEFAULTS.get(name, 1)
        number = where.number_input(title, value=value, step=1, key=key)
        return None if number is None else int(number)
    text = where.text_input(title, value=default or "", key=key)
    return text.strip() or None


def part_inputs(part: str, title: str, specs: list[FieldSpec], rows: list[dict]) -> list[dict]:
    """The fields of each vehicle or road user, one bordered block each."""
    records = []
    for i, row in enumerate(rows):
        with st.container(border=True):
            st.markdown(f"**{title} {i + 1}**")
            columns = st.columns(COLUMNS_PER_PART)
            records.append(
                {
                    spec.name: field_input(
                        spec,
                        row.get(spec.name),
                        columns[j % COLUMNS_PER_PART],
                        f"{part}.{i}.{spec.name}",
                    )
                    for j, spec in enumerate(specs)
                }
            )
    return records


def prediction_form() -> None:
    example = pc.example_record()
    st.caption(
        f"Starts from accident {example.get('num_acc') or '(built-in example)'} of "
        "serving/predict_request.json; every field of the request, left empty when not filled in."
    )
    parts = {"vehicles": example.get("vehicles") or [{}], "users": example.get("users") or [{}]}
    left, right = st.columns(2)
    counts = {
        "vehicles": left.number_input("vehicles", 1, MAX_VEHICLES, len(parts["vehicles"])),
        "users": right.number_input("road users", 1, MAX_USERS, len(parts["users"])),
    }
    for part, rows in parts.items():  # more than the example has: empty ones
        parts[part] = (rows + [{}] * counts[part])[: counts[part]]
    values: dict[str, Any] = {}
    with st.form("predict"):
        for group, specs in grouped_fields().items():
            st.markdown(f"**{group}**")
            columns = st.columns(COLUMNS_PER_GROUP)
            for i, spec in enumerate(specs):
                where = columns[i % COLUMNS_PER_GROUP]
                values[spec.name] = field_input(spec, example.get(spec.name), where, spec.name)
        values["vehicles"] = part_inputs("vehicles", "Vehicle", VEHICLE_SPECS, parts["vehicles"])
        values["users"] = part_inputs("users", "Road user", USER_SPECS, parts["users"])
        submitted = st.form_submit_button("Predict", type="primary")
    if submitted:
        show_prediction(*pc.call_service(values))


def show_explanation(explanation: dict[str, Any]) -> None:
    bias, rest = explanation.get("bias"), explanation.get("rest")
    st.markdown(
        f"What moved the probability of **{explanation.get('label')}** most, from the model's "
        f"base rate {fmt.number(bias, 'probability')} (other features together: "
        f"{fmt.number(rest, 'probability', signed=True)}):"
    )
    table = pd.DataFrame(
        [
            {
                "feature": item.get("description") or item.get("feature"),
                "effect on the probability": fmt.number(
                    item.get("contribution"), "probability", signed=True
                ),
                "computed from": item.get("baac"),
            }
            for item in explanation.get("contributions") or []
        ]
    )
    # A static table: the descriptions wrap instead of being cut.
    st.table(table.set_index("feature"))


def show_prediction(kind: str, payload: Any) -> None:
    url = pc.api_url()
    if kind == "down":
        st.error(
            f"The prediction service is down or unreachable ({payload}). Start the BentoML "
            f"service (`make serve`), or point ${pc.API_URL_ENV} at it (now {url})."
        )
    elif kind == "unauthorized":
        hint = (
            "is not set" if not os.environ.get(pc.API_KEY_ENV) else "does not match the service's"
        )
        st.error(f"401: the service refused the API key: ${pc.API_KEY_ENV} {hint}. ({payload})")
    elif kind == "rejected":
        st.error("The service rejected the record:")
        st.json(payload)
    elif kind == "failed":
        st.error(f"The service failed: {payload}")
    else:
        first = (payload.get("predictions") or [None])[0] if isinstance(payload, dict) else None
        first = first if isinstance(first, dict) else {}
        label, probabilities = first.get("label"), first.get("probabilities") or {}
        chance = probabilities.get(label) if isinstance(probabilities, dict) else None
        if label and isinstance(chance, int | float):
            st.success(f"Predicted: **{label}**, probability {chance:.1%}")
            st.caption(" · ".join(f"{k} {v:.1%}" for k, v in probabilities.items()))
        else:
            st.success(f"Predicted: **{label}**" if label else "Prediction")
        explanation = first.get("explanation")
        if isinstance(explanation, dict) and explanation.get("contributions"):
            show_explanation(explanation)
        with st.expander("Service answer (JSON)"):
            st.json(payload)


def main() -> None:
    st.title("Predict an accident's severity")
    prediction_form()


main()
