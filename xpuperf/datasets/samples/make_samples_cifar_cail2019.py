"""Regenerate the synthetic open_cifar and open_cail2019 samples (seeded).

    python xpuperf/datasets/samples/make_samples_cifar_cail2019.py

open_cifar/test.bin: CIFAR-100 binary records (coarse label, fine label, 3072
pixel bytes as R, G, B planes) of gradients with one shape. The coarse label is
fine // 5, not CIFAR's real grouping; nothing reads it but the loader's checks.

open_cail2019/test.json: CAIL2019-SCM lines of invented private-lending cases,
made from a few facts (purpose, interest, security, the borrower's conduct,
evidence): B or C (the label) shares all but one of A's facts, the other
candidate shares at most two, so a trained model could tell them apart.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent
CIFAR_RECORDS, SIDE = 32, 32
CAIL_TRIPLETS = 32

SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林罗高"
FACTS = {
    "purpose": ("资金周转", "经营需要", "购买住房", "装修房屋", "支付货款", "偿还他人债务"),
    "interest": ("约定月利率2%", "约定年利率24%", "未约定利息", "约定月息1.5分", "约定年利率6%"),
    "security": ("由第三人{g}提供连带责任保证", "以其名下车辆提供抵押", "未提供任何担保",
                 "以其名下房产设定抵押", "由{g}在借条上签字作为保证人"),
    "conduct": ("仅偿还部分利息", "分文未还", "以各种理由拖延还款", "出具还款承诺书后仍未履行",
                "更换联系方式下落不明"),
    "evidence": ("原告提交了借条及银行转账凭证", "原告提交了借款合同及微信聊天记录",
                 "被告对借款事实无异议", "被告辩称借款已经清偿但未提交证据", "被告经传票传唤未到庭"),
}


def make_cifar(file: Path, rng: np.random.Generator) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0.0, 1.0, SIDE, dtype=np.float32)
    records = []
    for i in range(CIFAR_RECORDS):
        a, b = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        pixels = a + (b - a) * (ramp[:, None, None] if i % 2 else ramp[None, :, None])
        image = Image.fromarray(np.clip(np.broadcast_to(pixels, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8))
        x0, y0 = rng.integers(0, SIDE // 2, size=2)
        x1, y1 = rng.integers(SIDE // 2, SIDE, size=2)
        shape = ImageDraw.Draw(image).ellipse if i % 3 else ImageDraw.Draw(image).rectangle
        shape((int(x0), int(y0), int(x1), int(y1)), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        fine = int(rng.integers(0, 100))
        planes = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).tobytes()
        records.append(bytes([fine // 5, fine]) + planes)
    file.write_bytes(b"".join(records))


def _case(rng: np.random.Generator, facts: dict[str, int]) -> str:
    people = rng.choice(len(SURNAMES), 3, replace=False)
    plaintiff, defendant, guarantor = (f"{SURNAMES[int(i)]}某" for i in people)
    year, month = int(rng.integers(2012, 2019)), int(rng.integers(1, 13))
    amount = int(rng.integers(1, 50))
    text = {k: FACTS[k][v].format(g=guarantor) for k, v in facts.items()}
    return (f"原告{plaintiff}诉称：{year}年{month}月，被告{defendant}因{text['purpose']}向原告借款"
            f"{amount}万元，{text['interest']}，{text['security']}。借款到期后，被告{text['conduct']}。"
            f"庭审中，{text['evidence']}。")


def _changed(rng: np.random.Generator, facts: dict[str, int], count: int) -> dict[str, int]:
    out = dict(facts)
    for key in rng.choice(list(FACTS), count, replace=False):
        out[key] = int((facts[key] + rng.integers(1, len(FACTS[key]))) % len(FACTS[key]))
    return out


def make_cail2019(file: Path, rng: np.random.Generator) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(CAIL_TRIPLETS):
        facts = {k: int(rng.integers(0, len(v))) for k, v in FACTS.items()}
        similar, other = _changed(rng, facts, 1), _changed(rng, facts, int(rng.integers(3, 6)))
        label = "B" if rng.random() < 0.5 else "C"
        b, c = (similar, other) if label == "B" else (other, similar)
        row = {"A": _case(rng, facts), "B": _case(rng, b), "C": _case(rng, c), "label": label}
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    file.write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    make_cifar(HERE / "open_cifar" / "test.bin", np.random.default_rng(2))
    make_cail2019(HERE / "open_cail2019" / "test.json", np.random.default_rng(3))
