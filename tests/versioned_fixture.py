"""A small written corpus with several versions side by side, built as collection `shop`.

Labels: `1.0`, `2.0` (the newest release), `2.1rc1` (a pre-release), `draft` (a pre-release word) and
`docs` (pages outside any version folder). Each version's guide has a word no other version has, a
tiny section that merges into the next one, and a Python example, so tests can tell exactly which
version, section and code block a hit or page came from.
"""

from __future__ import annotations

from pathlib import Path

BASE_URL = "https://shop.example/docs/"
VERSION_FROM_PATH = r"^v?([^/]+)/"

# One word per label that appears in no other label's pages.
MARKERS = {"1.0": "marmalade", "2.0": "zephyr", "2.1rc1": "nebula", "draft": "quokka", "docs": "heliotrope"}


def guide(version: str, marker: str, signature: str) -> str:
    filler = " ".join(
        f"Step {n} of the checkout walks the cart through pricing, taxes and stock checks before payment."
        for n in range(1, 9)
    )
    return f"""# Shop guide

The shop library {version} sells things from a Python program. This release is the {marker} release.

## Install

Run pip install shop.

## Checkout

{filler}

The checkout keeps every order in the ledger until the payment provider confirms it.

```python
from shop import checkout_cart

receipt = {signature}
print(receipt.total)
```

### Coupons

A coupon lowers the total of a cart; expired coupons raise CouponExpired at checkout time.
Coupons stack only when the shop owner enables stacking in the settings file.

## Refunds

{" ".join(f"Refund rule {n}: money goes back to the original payment method within five days." for n in range(1, 7))}
"""


PAGES = {
    "v1.0/guide.md": guide("1.0", MARKERS["1.0"], "checkout_cart(cart, coupon=None)"),
    "v2.0/guide.md": guide("2.0", MARKERS["2.0"], "checkout_cart(cart, *, coupons=())"),
    "v2.1rc1/guide.md": guide("2.1rc1", MARKERS["2.1rc1"], "checkout_cart(cart, *, coupons=(), gift=False)"),
    "draft/guide.md": guide("draft", MARKERS["draft"], "checkout_cart(cart, plan='draft')"),
    "about.md": f"# About the shop\n\nThe shop project began as a {MARKERS['docs']} garden market "
    "stall and grew into a library.\n\n## Team\n\nThree maintainers review every change.\n",
}


def write_shop(target: Path) -> Path:
    for path, text in PAGES.items():
        file = target / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
    return target
