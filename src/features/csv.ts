/**
 * RFC 4180 CSV, incrementally: `CsvParser.push(chunk)` takes text in pieces of any size (a
 * download as it arrives) and returns the records completed so far; `end()` flushes the last one.
 * `parseCsv(text)` is the one-shot form.
 *
 * The dialect is the one Python's `csv` module and pandas write: comma separator, `"` quotes,
 * a quote inside a quoted field doubled, CRLF or LF line ends (a lone CR is accepted too), fields
 * may hold commas and line breaks when quoted. A UTF-8 byte-order mark before the first field is
 * dropped. Leniency where readers in the wild are lenient: a quote inside an unquoted field is
 * kept as text (Python's reader does the same), and empty lines are skipped (Python's DictReader
 * skips them). Errors, with the line number: text after a closing quote, and an unterminated
 * quoted field at the end of input.
 *
 * The parser is a resumable state machine — a quoted field that spans many chunks is never
 * rescanned — and copies text with `slice` between delimiters rather than per character, so
 * multi-megabyte label files parse at tens to hundreds of MB/s.
 */
import { FeatureCatalogError } from '../errors.js';

/** Receives each completed record and the 1-based line it starts on. */
export type RecordSink = (fields: string[], line: number) => void;

const COMMA = 0x2c;
const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;
const BOM = 0xfeff;

/** Where the parser is between two characters. */
const enum State {
  /** At the start of a field (after a comma or a line end, or at the start of input). */
  FieldStart,
  /** Inside an unquoted field. */
  Unquoted,
  /** Inside a quoted field. */
  Quoted,
  /** Just after a quote inside a quoted field: a doubled quote or the closing one. */
  QuoteInQuoted,
  /** Just after a CR that ended a record: a following LF belongs to the same line end. */
  AfterCr,
}

export class CsvParser {
  private state: State = State.FieldStart;
  /** Pieces of the current field (joined once the field ends). */
  private piece: string[] = [];
  private record: string[] = [];
  /** Whether the current record has begun (a field started), so that empty lines are skipped. */
  private inRecord = false;
  private started = false;
  /** 1-based line of the current position, for error messages. */
  private line = 1;
  private recordLine = 1;

  constructor(private readonly source = 'CSV') {}

  /** Parses `chunk`, handing each record it completes to `out` with the line the record starts on. */
  push(chunk: string, out: RecordSink): void {
    let i = 0;
    const n = chunk.length;
    if (!this.started && n > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === BOM) i = 1;
    }
    while (i < n) {
      switch (this.state) {
        case State.AfterCr: {
          this.state = State.FieldStart;
          if (chunk.charCodeAt(i) === LF) i++;
          break;
        }
        case State.FieldStart: {
          const c = chunk.charCodeAt(i);
          if (c === QUOTE) {
            this.beginRecord();
            this.state = State.Quoted;
            i++;
          } else if (c === COMMA) {
            this.beginRecord();
            this.record.push('');
            i++;
          } else if (c === LF || c === CR) {
            // A line end right after a comma ends the record with an empty last field; at the
            // start of a line it is an empty line, which is skipped.
            if (this.inRecord) this.record.push('');
            this.endRecord(out);
            this.newline(c);
            i++;
          } else {
            this.beginRecord();
            this.state = State.Unquoted;
          }
          break;
        }
        case State.Unquoted: {
          let j = i;
          let c = 0;
          while (j < n) {
            c = chunk.charCodeAt(j);
            if (c === COMMA || c === LF || c === CR) break;
            j++;
          }
          if (j > i) this.piece.push(chunk.slice(i, j));
          if (j === n) {
            i = n;
            break;
          }
          this.record.push(this.takeField());
          if (c === COMMA) {
            this.state = State.FieldStart;
          } else {
            this.endRecord(out);
            this.newline(c);
          }
          i = j + 1;
          break;
        }
        case State.Quoted: {
          const j = chunk.indexOf('"', i);
          const end = j === -1 ? n : j;
          if (end > i) {
            const text = chunk.slice(i, end);
            this.piece.push(text);
            this.countLines(text);
          }
          if (j === -1) {
            i = n;
          } else {
            this.state = State.QuoteInQuoted;
            i = j + 1;
          }
          break;
        }
        case State.QuoteInQuoted: {
          const c = chunk.charCodeAt(i);
          if (c === QUOTE) {
            this.piece.push('"');
            this.state = State.Quoted;
          } else if (c === COMMA) {
            this.record.push(this.takeField());
            this.state = State.FieldStart;
          } else if (c === LF || c === CR) {
            this.record.push(this.takeField());
            this.endRecord(out);
            this.newline(c);
          } else {
            throw new FeatureCatalogError(
              `${this.source}, line ${this.line}: found ${JSON.stringify(chunk[i])} after the closing quote of a field; expected a comma or a line end. ` +
                'A quote inside a quoted field must be doubled (""); the file is not RFC 4180 CSV or is damaged.',
            );
          }
          i++;
          break;
        }
      }
    }
  }

  /** Ends the input: hands over the last record if it had no line end; throws on an open quote. */
  end(out: RecordSink): void {
    if (this.state === State.Quoted) {
      throw new FeatureCatalogError(
        `${this.source}: the quoted field that starts on line ${this.recordLine} never closes; the file is truncated or a quote is unbalanced.`,
      );
    }
    if (this.state === State.Unquoted || this.state === State.QuoteInQuoted) {
      this.record.push(this.takeField());
    } else if (this.state === State.FieldStart && this.inRecord) {
      // Input ended right after a comma: the record's last field is empty.
      this.record.push('');
    }
    this.endRecord(out);
    this.state = State.FieldStart;
  }

  private beginRecord(): void {
    if (!this.inRecord) {
      this.inRecord = true;
      this.recordLine = this.line;
    }
  }

  private endRecord(sink: RecordSink): void {
    if (this.inRecord) sink(this.record, this.recordLine);
    this.record = [];
    this.inRecord = false;
  }

  private takeField(): string {
    const p = this.piece;
    const s = p.length === 1 ? (p[0] ?? '') : p.join('');
    this.piece = [];
    return s;
  }

  private newline(c: number): void {
    this.line++;
    this.state = c === CR ? State.AfterCr : State.FieldStart;
  }

  private countLines(text: string): void {
    // Line breaks inside quoted fields still advance the line count (error messages point at
    // the line an editor shows). CRLF counts once.
    for (let k = text.indexOf('\n'); k !== -1; k = text.indexOf('\n', k + 1)) this.line++;
    for (let k = text.indexOf('\r'); k !== -1; k = text.indexOf('\r', k + 1)) if (text.charCodeAt(k + 1) !== LF) this.line++;
  }
}

/** All records of `text` (the header row included). */
export function parseCsv(text: string, source = 'CSV'): string[][] {
  const parser = new CsvParser(source);
  const rows: string[][] = [];
  const sink = (r: string[]): void => void rows.push(r);
  parser.push(text, sink);
  parser.end(sink);
  return rows;
}
