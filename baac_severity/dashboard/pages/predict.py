"""Page "Predict" of the dashboard (``make dashboard``, top navigation): one accident, every
field of the request (``serving.schemas``: the accident's fields in groups, its vehicles and
its road users as editable tables), starting from a real accident
(``serving/predict_request.json``), scored by the running service with its explanation."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st

from baac_severity.dashboard import formatting as fmt
from baac_severity.data.schema import ACTP_CODES, CODES
from baac_severity.serving import client as pc
from baac_severity.serving.schemas import (
    ACCIDENT_SPECS,
    FIELD_LABELS,
    IDENTIFIERS,
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


def field_input(spec: FieldSpec, default: Any, where: Any) -> Any:
    """One widget for one accident field, in the field's type; None means not filled in."""
    name, title = spec.name, f"{FIELD_LABELS[spec.name]} ({spec.name})"
    if name in CODES:
        options = [None, *CODES[name]] if not spec.required else list(CODES[name])
        index = options.index(default) if default in options else 0
        return where.selectbox(
            title, options, index=index, format_func=lambda c: code_text(name, c), key=name
        )
    if name in ("lat", "long"):
        value = float(default) if isinstance(default, int | float) else None
        return where.number_input(title, value=value, format="%.5f", key=name)
    if name in ("an", "mois", "jour", "nbv", "vma"):
        value = int(default) if isinstance(default, int | float) else None
        if spec.required and value is None:
            value = pc.FORM_DEFAULTS.get(name, 1)
        number = where.number_input(title, value=value, step=1, key=name)
        return None if number is None else int(number)
    text = where.text_input(title, value=default or "", key=name)
    return text.strip() or None


def _code_column(field: str, description: str) -> Any:
    table: dict[Any, str] = dict(ACTP_CODES) if field == "actp" else dict(CODES[field])
    return st.column_config.SelectboxColumn(
        FIELD_LABELS[field],
        options=list(table),
        format_func=lambda code: code_text(field, code),
        help=description,
    )


def _column_config(specs: list[FieldSpec]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for spec in specs:
        title = FIELD_LABELS[spec.name]
        if spec.name in CODES or spec.name == "actp":
            config[spec.name] = _code_column(spec.name, spec.description)
        elif spec.name in ("an_nais", "occutc"):
            config[spec.name] = st.column_config.NumberColumn(
                title, format="%d", step=1, help=spec.description
            )
        else:
            config[spec.name] = st.column_config.TextColumn(title, help=spec.description)
    return config


def _plain(value: Any) -> Any:
    """A data-editor cell as JSON: NaN -> None, 3.0 -> 3 (codes and years are integers)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def rows_editor(title: str, specs: list[FieldSpec], rows: list[dict], key: str) -> list[dict]:
    """An editable table of the vehicles or road users, one column per request field."""
    st.markdown(f"**{title}**")
    names = [spec.name for spec in specs]
    frame = pd.DataFrame([{name: row.get(name) for name in names} for row in rows], columns=names)
    for spec in specs:  # integers with gaps: a nullable integer column, not float
        if spec.name not in IDENTIFIERS and spec.name != "actp":
            frame[spec.name] = frame[spec.name].astype("Int64")
    edited = st.data_editor(
        frame,
        column_config=_column_config(specs),
        num_rows="dynamic",
        hide_index=True,
        key=key,
        width="stretch",
    )
    return [
        {name: _plain(value) for name, value in row.items()} for row in edited.to_dict("records")
    ]


def prediction_form() -> None:
    example = pc.example_record()
    st.caption(
        f"Starts from accident {example.get('num_acc') or '(built-in example)'} of "
        "serving/predict_request.json; every field of the request, left empty when not filled in."
    )
    values: dict[str, Any] = {}
    with st.form("predict"):
        for group, specs in grouped_fields().items():
            st.markdown(f"**{group}**")
            columns = st.columns(COLUMNS_PER_GROUP)
            for i, spec in enumerate(specs):
                values[spec.name] = field_input(
                    spec, example.get(spec.name), columns[i % COLUMNS_PER_GROUP]
                )
        values["vehicles"] = rows_editor(
            "Vehicles", VEHICLE_SPECS, example.get("vehicles") or [{}], "vehicles"
        )
        values["users"] = rows_editor(
            "Road users", USER_SPECS, example.get("users") or [{}], "users"
        )
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
