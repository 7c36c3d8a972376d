#!/usr/bin/python3
"""SQLite files for the feature catalog's SQLite reader (src/features/sqlite.ts), written by
SQLite itself (Python's sqlite3; the sqlite3 shell for reserved bytes), with the rows as SQLite
reads them back dumped to JSON: the reader is tested against SQLite, not against itself.

    /usr/bin/python3 tools/golden/make_catalog_fixtures.py [OUT]     (OUT default tests/fixtures/catalog)

OUT/
  autointerp-p512.sqlite    Goodfire's autointerp columns (feature_id, label, seqs, indices, quality,
                            interestingness, model_name, prompt_version), 2000 rows on 512-byte pages:
                            a B-tree three levels deep, `seqs` long enough to spill to overflow pages,
                            unicode / quotes / commas / newlines in labels, "dead feature" rows, NULL
                            and text-typed scores (as Goodfire's sqlite_all_varchar hints).
  types-p1024.sqlite        every serial type: integers of each width (both signs, the extremes),
                            floats, 0/1 constants, text, blobs (empty, multi-page), NULLs; an INTEGER
                            PRIMARY KEY rowid alias; quoted column names; a column added by ALTER TABLE
                            (older rows lack it); a VIRTUAL generated column; a WITHOUT ROWID table.
  big-p65536.sqlite         65536-byte pages (stored as 1 in the header), rows of up to 150 k characters:
                            long overflow chains.
  reserved-p4096.sqlite     32 reserved bytes per page (sqlite3 shell `.filectrl reserve_bytes`); skipped
                            with a warning when the shell is missing.
  utf16le.sqlite, utf16be.sqlite   text stored as UTF-16.
  expected.json             per file and table: columns, rows (SELECT * in rowid order), and which
                            columns are VIRTUAL (the reader returns null for those).

JSON encoding of values: null, strings, numbers when within ±(2^53 − 1), {"int": "…"} for larger
integers, {"float": "inf" | "-inf" | "-0"} for those floats, {"blob": "hex"} for blobs; text over
1000 characters and blobs over 500 bytes as {"textSha256" | "blobSha256": hex, "bytes": n} (SHA-256
of the UTF-8 text / the blob) to keep the file small.
"""
import hashlib
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/catalog'


def digest(kind, b):
    return {kind + 'Sha256': hashlib.sha256(b).hexdigest(), 'bytes': len(b)}


def enc(v):
    if isinstance(v, str) and len(v) > 1000:
        return digest('text', v.encode('utf-8'))
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v if abs(v) < 2**53 else {'int': str(v)}
    if isinstance(v, float):
        if math.isinf(v):
            return {'float': 'inf' if v > 0 else '-inf'}
        if v == 0 and math.copysign(1, v) < 0:
            return {'float': '-0'}
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {'blob': bytes(v).hex()} if len(v) <= 500 else digest('blob', bytes(v))
    raise TypeError(type(v))


def dump(path, virtual=None):
    con = sqlite3.connect(path)
    out = {}
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY rowid")]
    for t in tables:
        cur = con.execute(f'SELECT * FROM "{t}"')
        cols = [d[0] for d in cur.description]
        without_rowid = 'WITHOUT ROWID' in con.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (t,)).fetchone()[0].upper()
        if without_rowid:
            out[t] = {'columns': cols, 'withoutRowid': True}
            continue
        rows = [[enc(v) for v in r] for r in con.execute(f'SELECT * FROM "{t}" ORDER BY rowid')]
        out[t] = {'columns': cols, 'rows': rows, 'virtual': (virtual or {}).get(t, [])}
    con.close()
    return out


def fresh(path, page_size, encoding=None):
    if os.path.exists(path):
        os.remove(path)
    con = sqlite3.connect(path)
    if encoding:
        con.execute(f"PRAGMA encoding = '{encoding}'")
    con.execute(f'PRAGMA page_size = {page_size}')
    return con


LABEL_PIECES = ['backtracking', '"Wait"', 'comma, inside', 'line\nbreak', 'CRLF\r\nline', 'quote "x"', 'émoji 🤔', '中文标签',
                'RTL שלום', 'tab\there', '<b>not html</b>', "apostrophe's", '']


def autointerp(path):
    rnd = random.Random(2024)
    con = fresh(path, 512)
    con.execute('CREATE TABLE autointerp (feature_id INTEGER, label TEXT, seqs TEXT, indices TEXT, quality REAL, '
                'interestingness REAL, model_name TEXT, prompt_version TEXT)')
    rows = []
    for f in range(2000):
        if f % 97 == 5:
            label, q, i = 'dead feature', None, None
        else:
            label = ' '.join(rnd.choice(LABEL_PIECES) for _ in range(rnd.randint(1, 4)))
            q = round(rnd.random(), 3)
            i = round(rnd.random(), 3)
            if f % 13 == 0:
                q = str(q)  # text-typed score, as a sqlite_all_varchar export would have it
            if f % 31 == 0:
                i = None
        n = rnd.choice([0, 2, 5, 10]) if f % 50 else 150  # one row in 50 spills to overflow pages
        seqs = json.dumps([rnd.randint(0, 10**6) for _ in range(n)])
        idx = json.dumps([rnd.randint(0, 4096) for _ in range(n)])
        rows.append((f, label, seqs, idx, q, i, 'claude-3-7-sonnet-latest', 'v0-dev'))
    rnd.shuffle(rows)  # rowid order differs from feature order
    con.executemany('INSERT INTO autointerp VALUES (?, ?, ?, ?, ?, ?, ?, ?)', rows)
    con.commit()
    con.close()
    return dump(path)


def types(path):
    con = fresh(path, 1024)
    con.execute('CREATE TABLE kinds ("id" INTEGER PRIMARY KEY, [int value] INT, `text value` TEXT, "real value" REAL, '
                'blob_value BLOB, anything, g INTEGER GENERATED ALWAYS AS (length("text value")) VIRTUAL, '
                "CONSTRAINT kinds_check CHECK (id > -1000000))")
    ints = [0, 1, -1, 127, -128, 128, -129, 32767, -32768, 32768, 2**23 - 1, -2**23, 2**23, 2**31 - 1, -2**31, 2**31,
            2**47 - 1, -2**47, 2**47, 2**53, -2**53, 2**53 + 1, 2**63 - 1, -2**63]
    rows = []
    for k, v in enumerate(ints):
        rows.append((k + 1, v, f'int {v}', None, None, v))
    floats = [0.5, -0.25, 1e300, -1e-300, 3.141592653589793, float('inf'), float('-inf'), -0.0, 1.0, 2.0**60]
    for k, v in enumerate(floats):
        rows.append((100 + k, None, f'float {v}', v, None, v))
    texts = ['', 'a', 'ascii text', 'émoji 🤔 and 中文', '"quoted", comma', 'x' * 5000, 'ü' * 3000]
    for k, v in enumerate(texts):
        rows.append((200 + k, k, v, float(k), None, v))
    blobs = [b'', b'\x00\x01\x02', bytes(range(256)) * 40]
    for k, v in enumerate(blobs):
        rows.append((300 + k, None, None, None, v, v))
    rows.append((-5, -5, 'negative rowid', -5.5, b'\xff', None))
    con.executemany('INSERT INTO kinds ("id", [int value], `text value`, "real value", blob_value, anything) VALUES (?, ?, ?, ?, ?, ?)', rows)
    con.commit()
    con.execute("ALTER TABLE kinds ADD COLUMN added TEXT DEFAULT NULL")
    con.execute("INSERT INTO kinds (\"id\", [int value], `text value`, added) VALUES (400, 4, 'after alter', 'new column')")
    con.execute('CREATE TABLE pk_table (name TEXT, n INTEGER, PRIMARY KEY (n))')
    con.executemany('INSERT INTO pk_table VALUES (?, ?)', [(f'n{k}', k * 7) for k in range(50)])
    con.execute('CREATE TABLE wr (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID')
    con.executemany('INSERT INTO wr VALUES (?, ?)', [(f'k{k}', k) for k in range(20)])
    con.execute('CREATE INDEX kinds_text ON kinds ("text value")')
    con.commit()
    con.close()
    return dump(path, {'kinds': ['g']})


def big(path):
    rnd = random.Random(7)
    con = fresh(path, 65536)
    con.execute('CREATE TABLE big (id INTEGER, body TEXT, raw BLOB)')
    for k in range(4):
        n = [10, 150000, 65500, 3][k]
        alphabet = 'abcdefghijklmnopqrstuvwxyz 🤔é' if k != 1 else 'abcdefghijklmnopqrstuvwxyz '
        body = ''.join(rnd.choice(alphabet) for _ in range(n))
        con.execute('INSERT INTO big VALUES (?, ?, ?)', (k, body, bytes(rnd.getrandbits(8) for _ in range(n // 8))))
    con.commit()
    con.close()
    return dump(path)


def reserved(path):
    shell = shutil.which('sqlite3')
    if shell is None:
        print('warning: no sqlite3 shell; reserved-p4096.sqlite not written', file=sys.stderr)
        return None
    if os.path.exists(path):
        os.remove(path)
    con = sqlite3.connect(path)
    con.execute('PRAGMA page_size = 4096')
    con.execute('CREATE TABLE autointerp (feature_id INTEGER, label TEXT, quality REAL, interestingness REAL, model_name TEXT, prompt_version TEXT)')
    con.executemany('INSERT INTO autointerp VALUES (?, ?, ?, ?, ?, ?)',
                    [(f, f'label {f} ' + 'x' * (f * 97 % 3000), (f % 10) / 10, None, 'm', 'v1') for f in range(60)])
    con.commit()
    con.close()
    subprocess.run([shell, path, '.filectrl reserve_bytes 32', 'VACUUM;'], check=True)
    with open(path, 'rb') as fh:
        assert fh.read(21)[20] == 32, 'reserve_bytes did not take'
    return dump(path)


def utf16(path, encoding):
    con = fresh(path, 1024, encoding)
    con.execute('CREATE TABLE autointerp (feature_id INTEGER, label TEXT, quality REAL)')
    con.executemany('INSERT INTO autointerp VALUES (?, ?, ?)', [(f, f'{LABEL_PIECES[f % len(LABEL_PIECES)]} {f} ' + 'é' * (f * 37 % 900), 0.5) for f in range(80)])
    con.commit()
    con.close()
    return dump(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {
        'autointerp-p512.sqlite': autointerp(os.path.join(OUT, 'autointerp-p512.sqlite')),
        'types-p1024.sqlite': types(os.path.join(OUT, 'types-p1024.sqlite')),
        'big-p65536.sqlite': big(os.path.join(OUT, 'big-p65536.sqlite')),
        'utf16le.sqlite': utf16(os.path.join(OUT, 'utf16le.sqlite'), 'UTF-16le'),
        'utf16be.sqlite': utf16(os.path.join(OUT, 'utf16be.sqlite'), 'UTF-16be'),
    }
    r = reserved(os.path.join(OUT, 'reserved-p4096.sqlite'))
    if r is not None:
        expected['reserved-p4096.sqlite'] = r
    with open(os.path.join(OUT, 'expected.json'), 'w', encoding='utf-8') as fh:
        json.dump({'generator': 'tools/golden/make_catalog_fixtures.py', 'sqlite_version': sqlite3.sqlite_version, 'files': expected}, fh, ensure_ascii=False)
        fh.write('\n')
    for name in sorted(os.listdir(OUT)):
        print(f'{name:28s} {os.path.getsize(os.path.join(OUT, name)):>9d} bytes')


if __name__ == '__main__':
    main()
