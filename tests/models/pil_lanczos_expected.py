# Makes pil_lanczos_expected.json for reference.test.ts: what Debian's Pillow (python3-pil) computes for
# Image.resize(..., LANCZOS) of RGB test patterns, and the size diffusers' Flux2ImageProcessor._resize_to_target_area
# picks for references over 1024² px. The pattern is integer arithmetic that the test rebuilds exactly.
# Run: /usr/bin/python3 tests/models/pil_lanczos_expected.py   (writes tests/models/data/pil_lanczos_expected.json)
import base64, hashlib, json, math, os
import numpy as np
import PIL
from PIL import Image


def pattern(w, h):
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    noise = ((x * 1973) ^ (y * 3001) ^ (c * 7919)) & 63
    checker = np.where((x // 7 + y // 5) % 2 == 1, 128, 0)
    v = (x * 255 // w + y * 127 // h + noise + checker) % 256
    return v.astype(np.uint8)


def target_area_size(w, h, area=1024 * 1024):
    scale = math.sqrt(area / (w * h))
    return int(w * scale), int(h * scale)


cases = []
# Small ones, stored whole: down in both axes, one axis only, up in one axis, a large factor.
for (w, h), (ow, oh) in [((97, 61), (40, 23)), ((80, 64), (80, 37)), ((50, 70), (71, 70)), ((301, 203), (29, 17)), ((64, 64), (63, 65))]:
    out = np.asarray(Image.fromarray(pattern(w, h)).resize((ow, oh), Image.LANCZOS))
    cases.append({"in": [w, h], "out": [ow, oh], "rgb_base64": base64.b64encode(out.tobytes()).decode()})
# References over 1024² px as diffusers resizes them: the output's SHA-256 and its first row.
big = []
for w, h in [(1100, 1000), (2049, 700), (1031, 1031)]:
    ow, oh = target_area_size(w, h)
    out = np.asarray(Image.fromarray(pattern(w, h)).resize((ow, oh), Image.LANCZOS))
    big.append({"in": [w, h], "out": [ow, oh], "sha256": hashlib.sha256(out.tobytes()).hexdigest(),
                "first_row_base64": base64.b64encode(out[0].tobytes()).decode()})
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "data", "pil_lanczos_expected.json"), "w") as f:
    json.dump({"pillow": PIL.__version__, "numpy": np.__version__, "small": cases, "target_area": big}, f, indent=1)
    f.write("\n")
