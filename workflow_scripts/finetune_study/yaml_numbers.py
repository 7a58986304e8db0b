"""Numbers as YAML reads them: the cause and the fix for a schema error on a value YAML 1.1 (the
version Snakemake's reader speaks) took for text though it reads as a number (1e-3: a YAML 1.1
float needs a dot and, with an exponent, its sign), or on a float given to an integer key (8.0).
Standard library only; config.py adds the hint to its one-line errors."""

import decimal


def text_number_hint(error):
    """'; YAML read 1e-3 as text ...': the cause and the fix, when a schema error is a value that
    YAML 1.1 (Snakemake's reader) took for a string but that reads as a number (1e-3, 5e-5, .5e2:
    a YAML 1.1 float needs a dot and a signed exponent), where the schema wants a number; else ''."""
    wanted = set()
    for e in [error, *(error.context or ())]:  # anyOf / oneOf: what each branch wanted
        if e.validator == "type":
            wanted |= {e.validator_value} if isinstance(e.validator_value, str) else set(e.validator_value)
    if isinstance(error.instance, float) and wanted & {"integer"} and error.instance.is_integer():
        return f"; write {int(error.instance)}" if abs(error.instance) < 10**18 else ""
    if not isinstance(error.instance, str) or not wanted & {"number", "integer"}:
        return ""
    fixes = number_spellings(error.instance, integer="number" not in wanted)
    if not fixes:
        return ""
    return f"; YAML read {error.instance} as text, not a number: write {' or '.join(fixes)}"


def number_spellings(text, integer=False):
    """How to write the number `text` reads as (Python's reading) so that YAML 1.1 reads a number:
    ['1.0e-3', '0.001'] for '1e-3'; [] when it reads as none (or as no integer, for integer keys)."""
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return []
    if not value.is_finite() or (integer and value != value.to_integral_value()):
        return []
    if integer:
        return [str(int(value))] if abs(value) < 10**18 else []
    sign, digits, exponent = value.normalize().as_tuple()
    power = len(digits) - 1 + exponent
    mantissa = ("-" if sign else "") + f"{digits[0]}." + ("".join(map(str, digits[1:])) or "0")
    out = [f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"]
    if abs(power) <= 12:
        plain = format(value.normalize(), "f")
        out.append(plain if "." in plain else plain + ".0")
    return out
