import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';

import { client } from './client.mjs';

const openai = client();

test('speech streams to a file as it is synthesized', async () => {
  const { data: response, response: raw } = await openai.audio.speech
    .create({ model: 'tts-1', voice: 'alloy', input: 'Hello from Node. This is Hearth.', response_format: 'wav' })
    .withResponse();
  assert.equal(raw.headers.get('content-type'), 'audio/wav');
  const path = join(await mkdtemp(join(tmpdir(), 'hearth-node-')), 'speech.wav');
  await pipeline(Readable.fromWeb(response.body), createWriteStream(path));
  const wav = await readFile(path);
  assert.equal(wav.subarray(0, 4).toString('latin1'), 'RIFF');
  assert.equal(wav.subarray(8, 12).toString('latin1'), 'WAVE');
  // More than a second of 24 kHz 16-bit mono audio.
  assert.ok(wav.length > 44 + 24_000 * 2, `only ${wav.length} bytes`);
});

test('speech in mp3 at another speed, and a bad voice is a 400 naming it', async () => {
  const response = await openai.audio.speech.create({
    model: 'gpt-4o-mini-tts', voice: 'nova', input: 'Quickly now.', response_format: 'mp3', speed: 1.5,
  });
  const mp3 = Buffer.from(await response.arrayBuffer());
  assert.ok(mp3.length > 1000);
  assert.ok(mp3.subarray(0, 3).toString('latin1') === 'ID3' || (mp3[0] === 0xff && (mp3[1] & 0xe0) === 0xe0));
  await assert.rejects(
    openai.audio.speech.create({ model: 'tts-1', voice: 'no-such-voice', input: 'Hi.' }),
    (error) => error.status === 400 && error.param === 'voice',
  );
});
