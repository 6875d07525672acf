import os


def run():
    junk = b"\xff\xfe\xc3\x28 \x00\x1b[2J\x1b]0;owned\x07\r\x08\xed\xa0\x80 end\n"
    os.write(1, junk)
    os.write(2, junk)
    return {"combined_score": 0.25}
