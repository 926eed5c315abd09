import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { toFile } from 'openai';

import { client, speak } from './client.mjs';

const openai = client();
let audio;

before(async () => {
  audio = await speak(openai, 'The quick brown fox jumps over the lazy dog.');
});

test('verbose_json with word timestamps', async () => {
  const transcription = await openai.audio.transcriptions.create({
    file: await toFile(audio, 'fox.wav'), model: 'whisper-1', response_format: 'verbose_json',
    timestamp_granularities: ['word', 'segment'],
  });
  assert.equal(transcription.task, 'transcribe');
  assert.equal(transcription.language, 'english');
  assert.match(transcription.text.toLowerCase(), /quick brown fox/);
  assert.ok(transcription.duration > 1);
  const { words, segments } = transcription;
  assert.ok(words.length >= 7, JSON.stringify(words));
  let last = 0;
  for (const word of words) {
    assert.equal(typeof word.word, 'string');
    assert.ok(word.start >= last - 1e-6 && word.end >= word.start && word.end <= transcription.duration + 0.5);
    last = word.start;
  }
  assert.ok(segments.length >= 1 && typeof segments[0].avg_logprob === 'number');
});

test('srt is cues with times', async () => {
  const srt = await openai.audio.transcriptions.create({
    file: await toFile(audio, 'fox.wav'), model: 'whisper-1', response_format: 'srt',
  });
  assert.equal(typeof srt, 'string');
  assert.match(srt, /^1\r?\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\r?\n/);
  assert.match(srt.toLowerCase(), /fox/);
});
