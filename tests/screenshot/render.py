#!/usr/bin/env python3
"""Draws a terminal capture (JSON rows of [text, fg, bg, bold, inverse] cells, written
by the ignored `screenshot_of_the_view_under_a_flood` test) to a PNG for the README.

Usage: python3 tests/screenshot/render.py target/screenshot.json assets/screenshot.png
Needs Pillow and the DejaVu Sans Mono fonts."""

import json
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE = 15
BACKGROUND = (24, 26, 33)
FOREGROUND = (215, 218, 224)
# The 16 xterm colours, as a dark theme draws them.
BASIC = [
    (40, 42, 54), (230, 80, 80), (90, 200, 110), (230, 200, 90),
    (100, 150, 240), (200, 110, 220), (90, 200, 210), (200, 200, 200),
    (110, 115, 130), (255, 120, 120), (130, 230, 150), (255, 230, 130),
    (140, 180, 255), (230, 150, 250), (140, 230, 240), (255, 255, 255),
]


def xterm(index):
    if index < 16:
        return BASIC[index]
    if index < 232:
        index -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[index // 36], steps[(index // 6) % 6], steps[index % 6]
    grey = 8 + (index - 232) * 10
    return grey, grey, grey


def colour(value, default):
    if value == "default":
        return default
    if isinstance(value, int):
        return xterm(value)
    return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))


def main(source, target):
    rows = json.load(open(source))
    regular = ImageFont.truetype(FONT, SIZE)
    bold = ImageFont.truetype(BOLD, SIZE)
    left, top, right, bottom = regular.getbbox("M")
    width, height = regular.getlength("M"), SIZE + 4
    image = Image.new("RGB", (int(width * len(rows[0])) + 20, height * len(rows) + 20), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(rows):
        for x, (text, fg, bg, is_bold, inverse) in enumerate(row):
            fg, bg = colour(fg, FOREGROUND), colour(bg, BACKGROUND)
            if inverse:
                fg, bg = bg, fg
            px, py = 10 + x * width, 10 + y * height
            if bg != BACKGROUND:
                draw.rectangle([px, py, px + width, py + height], fill=bg)
            if text.strip():
                draw.text((px, py + 1), text, font=bold if is_bold else regular, fill=fg)
    image.save(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
