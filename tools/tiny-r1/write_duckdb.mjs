#!/usr/bin/env node
/**
 * Tiny-R1's max-activating examples as a Goodfire-schema DuckDB file, so the page reads Tiny-R1
 * and Goodfire's real example databases through one query path (src/features/examples.ts).
 *
 *     node tools/tiny-r1/write_duckdb.mjs [DIR]        (DIR default: demo/public/models/tiny-r1/examples)
 *
 * Reads DIR/tokens.csv, DIR/activations.csv and DIR/autointerp.csv (written by features.py) with
 * DuckDB's own CSV reader — not Loupe's, so the node tests that compare the file against the CSVs
 * parse them independently — and writes DIR/examples.duckdb with three tables:
 *
 *   tokens      (sequence_id INTEGER, token_idx INTEGER, token INTEGER, decoded_token VARCHAR)
 *               ordered by sequence_id, token_idx
 *   activations (feature_id INTEGER, sequence_id INTEGER, token_idx INTEGER, strength FLOAT)
 *               ordered by feature_id, sequence_id, token_idx
 *   autointerp  (feature_id INTEGER, label VARCHAR, quality DOUBLE, interestingness DOUBLE,
 *                model_name VARCHAR, prompt_version VARCHAR)  ordered by feature_id
 *
 * Sorting by the filtered columns is what makes the file cheap to query over HTTP range reads:
 * DuckDB keeps min/max per row group (zone maps), so `WHERE feature_id = ?` reads only the row
 * groups that can hold the feature. `strength` is FLOAT because the SAE's activations are f32;
 * the CSV's 5 significant digits fit it.
 *
 * The file is written with STORAGE_VERSION 'v1.0.0' so the older DuckDB inside
 * @duckdb/duckdb-wasm (1.32.0 = DuckDB v1.4.3) can open what @duckdb/node-api (v1.5.x) writes.
 * Python's csv module writes an empty string as an empty unquoted field, which DuckDB reads as
 * NULL; features.py never writes NULL, so text columns are COALESCEd back to ''.
 */
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const dir = resolve(process.argv[2] ?? join(repo, 'demo/public/models/tiny-r1/examples'));
const out = join(dir, 'examples.duckdb');
const tmp = join(dir, 'examples.duckdb.tmp');

for (const name of ['tokens.csv', 'activations.csv', 'autointerp.csv']) {
  if (!existsSync(join(dir, name))) {
    console.error(`write_duckdb: ${join(dir, name)} is missing; run tools/tiny-r1/features.py first.`);
    process.exit(1);
  }
}

/** SQL string literal of a path (paths are ours, but quote them properly anyway). */
const lit = (s) => `'${s.replaceAll("'", "''")}'`;
/** DuckDB's CSV reader with the dialect Python's csv module writes (RFC 4180, header row). */
const csv = (name, columns) =>
  `read_csv(${lit(join(dir, name))}, header = true, delim = ',', quote = '"', escape = '"', strict_mode = true, ` +
  `columns = {${Object.entries(columns).map(([k, v]) => `${lit(k)}: ${lit(v)}`).join(', ')}})`;

for (const f of [tmp, `${tmp}.wal`]) rmSync(f, { force: true });
const instance = await DuckDBInstance.create(':memory:');
const con = await instance.connect();
const run = (sql) => con.run(sql);

await run(`ATTACH ${lit(tmp)} AS t (STORAGE_VERSION 'v1.0.0')`);
await run(`CREATE TABLE t.tokens AS
  SELECT sequence_id, token_idx, token, COALESCE(decoded_token, '') AS decoded_token
  FROM ${csv('tokens.csv', { sequence_id: 'INTEGER', token_idx: 'INTEGER', token: 'INTEGER', decoded_token: 'VARCHAR' })}
  ORDER BY sequence_id, token_idx`);
await run(`CREATE TABLE t.activations AS
  SELECT feature_id, sequence_id, token_idx, strength
  FROM ${csv('activations.csv', { feature_id: 'INTEGER', sequence_id: 'INTEGER', token_idx: 'INTEGER', strength: 'FLOAT' })}
  ORDER BY feature_id, sequence_id, token_idx`);
await run(`CREATE TABLE t.autointerp AS
  SELECT feature_id, COALESCE(label, '') AS label, quality, interestingness,
         COALESCE(model_name, '') AS model_name, COALESCE(prompt_version, '') AS prompt_version
  FROM ${csv('autointerp.csv', { feature_id: 'INTEGER', label: 'VARCHAR', quality: 'DOUBLE', interestingness: 'DOUBLE', model_name: 'VARCHAR', prompt_version: 'VARCHAR' })}
  ORDER BY feature_id`);

const counts = {};
for (const table of ['tokens', 'activations', 'autointerp']) {
  const reader = await con.runAndReadAll(`SELECT count(*) AS n FROM t.${table}`);
  counts[table] = Number(reader.getRows()[0][0]);
}
await run('DETACH t');
con.closeSync();
instance.closeSync();

rmSync(`${tmp}.wal`, { force: true });
renameSync(tmp, out);
console.log(JSON.stringify({ wrote: out, bytes: statSync(out).size, rows: counts }));
