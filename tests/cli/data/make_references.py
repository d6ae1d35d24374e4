# Makes the reference images of generate_edit.test.ts with Pillow (an independent PNG producer):
# ref_a.png 89×72 RGB and ref_b.png 70×101 RGBA (alpha dropped by the reader) for editing runs; small_40x40.png
# and wide_1000x100.png, which upstream's check_image_input refuses (side < 64 px, aspect ratio 10 > 8).
# Run: /usr/bin/python3 tests/cli/data/make_references.py
import os
import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(13)


def picture(w, h, channels, noisy=True):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h) + 64] + ([np.full_like(x, 200)] if channels == 4 else []), -1)
    noise = rng.integers(0, 40, size=base.shape) if noisy else 0
    return np.clip(base + noise, 0, 255).astype(np.uint8)


Image.fromarray(picture(89, 72, 3), "RGB").save(os.path.join(here, "ref_a.png"))
Image.fromarray(picture(70, 101, 4), "RGBA").save(os.path.join(here, "ref_b.png"))
Image.fromarray(picture(40, 40, 3, noisy=False), "RGB").save(os.path.join(here, "small_40x40.png"))
Image.fromarray(picture(1000, 100, 3, noisy=False), "RGB").save(os.path.join(here, "wide_1000x100.png"))
