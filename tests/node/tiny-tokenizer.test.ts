/**
 * transformers.js and Loupe's Python tokenizer agree on the tiny Qwen2 fixture.
 *
 * tests/fixtures/tiny-qwen2/tokenizer-golden.json holds ids produced by the Python tokenizer
 * (server/python/loupe_server/tokenizer.py, run by tools/tiny_model/make_tiny_qwen2.py); here
 * @huggingface/transformers loads the same folder from local files and must render the chat
 * template and tokenize to exactly the same ids — two independent implementations of byte-level
 * BPE, the Qwen2 split regex, added-token matching and DeepSeek-R1's chat template.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AutoTokenizer, env, type Message, type PreTrainedTokenizer } from '@huggingface/transformers';
import { beforeAll, describe, expect, test } from 'vitest';

const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/', import.meta.url));
const MODEL_ID = 'tiny-qwen2';

interface ChatMessage {
  role: string;
  content: string | null;
  tool_calls?: unknown[];
}

interface Golden {
  vocab_size: number;
  bos_token_id: number;
  eos_token_id: number;
  strings: { text: string; ids: number[]; ids_with_special_tokens: number[] }[];
  chats: { messages: ChatMessage[]; add_generation_prompt: boolean; text: string; ids: number[] }[];
}

const golden = JSON.parse(readFileSync(`${FIXTURES_DIR}${MODEL_ID}/tokenizer-golden.json`, 'utf8')) as Golden;

let tokenizer: PreTrainedTokenizer;

beforeAll(async () => {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = FIXTURES_DIR;
  env.useBrowserCache = false;
  env.useFSCache = false;
  tokenizer = await AutoTokenizer.from_pretrained(MODEL_ID);
});

describe('tiny-qwen2 tokenizer: transformers.js vs the Python tokenizer', () => {
  test('loads as a Qwen2 tokenizer with DeepSeek-R1 special tokens', () => {
    expect(tokenizer.constructor.name).toBe('Qwen2Tokenizer');
    expect(tokenizer.bos_token_id).toBe(golden.bos_token_id);
    expect(tokenizer.eos_token_id).toBe(golden.eos_token_id);
    expect(tokenizer.get_vocab().size).toBe(golden.vocab_size);
    expect(tokenizer.convert_tokens_to_ids('<think>')).toBeTypeOf('number');
    expect(tokenizer.convert_tokens_to_ids('</think>')).toBeTypeOf('number');
  });

  test.each(golden.strings.map((s) => [JSON.stringify(s.text).slice(0, 60), s] as const))(
    'encode %s',
    (_label, s) => {
      expect(tokenizer.encode(s.text, { add_special_tokens: false })).toEqual(s.ids);
      // The TemplateProcessing post-processor prepends BOS, as DeepSeek-R1-Distill-Qwen's does.
      expect(tokenizer.encode(s.text)).toEqual(s.ids_with_special_tokens);
    },
  );

  test('decode inverts encode (NFC-normalized text back)', () => {
    for (const s of golden.strings) {
      if (s.ids.length === 0) continue;
      expect(tokenizer.decode(s.ids)).toBe(s.text.normalize('NFC'));
    }
  });

  test.each(golden.chats.map((c, i) => [i, c] as const))('chat template %i renders and tokenizes identically', (_i, c) => {
    // The tool-call turn has `content: null` (what R1's template tests with `is none`), which
    // transformers.js's Message type does not declare.
    const messages = c.messages as unknown as Message[];
    const text = tokenizer.apply_chat_template(messages, {
      tokenize: false,
      add_generation_prompt: c.add_generation_prompt,
    });
    expect(text).toBe(c.text);
    const ids = tokenizer.apply_chat_template(messages, {
      tokenize: true,
      add_generation_prompt: c.add_generation_prompt,
      return_tensor: false,
      return_dict: false,
    });
    expect(ids).toEqual(c.ids);
  });

  test('the generation prompt opens the thinking block', () => {
    const first = golden.chats[0];
    expect(first?.text.endsWith('<｜Assistant｜><think>\n')).toBe(true);
    const think = tokenizer.convert_tokens_to_ids('<think>');
    expect(first?.ids.slice(-2)).toEqual([think, tokenizer.encode('\n', { add_special_tokens: false })[0]]);
  });
});
