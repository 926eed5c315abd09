import assert from 'node:assert/strict';
import { test } from 'node:test';

import { toFile } from 'openai';

import { client } from './client.mjs';

const openai = client();

test('files: create, retrieve, list, download and delete', async () => {
  const text = 'notes from node\n';
  const file = await openai.files.create({ file: await toFile(Buffer.from(text), 'notes.txt'), purpose: 'assistants' });
  assert.match(file.id, /^file-/);
  assert.equal(file.bytes, Buffer.byteLength(text));
  assert.equal(file.filename, 'notes.txt');
  assert.equal((await openai.files.retrieve(file.id)).id, file.id);
  const listed = [];
  for await (const item of openai.files.list({ purpose: 'assistants' })) listed.push(item.id);
  assert.ok(listed.includes(file.id));
  assert.equal(await (await openai.files.content(file.id)).text(), text);
  const deleted = await openai.files.delete(file.id);
  assert.deepEqual([deleted.id, deleted.deleted], [file.id, true]);
  await assert.rejects(openai.files.retrieve(file.id), (error) => error.status === 404);
});

test('uploads: parts joined in order into one file', async () => {
  const parts = [Buffer.from('first part, '), Buffer.from('second part, '), Buffer.from('and the last.')];
  const bytes = parts.reduce((sum, part) => sum + part.length, 0);
  const upload = await openai.uploads.create({ bytes, filename: 'joined.txt', mime_type: 'text/plain', purpose: 'assistants' });
  assert.equal(upload.status, 'pending');
  const ids = [];
  for (const [index, part] of parts.entries()) {
    ids.push((await openai.uploads.parts.create(upload.id, { data: await toFile(part, `part-${index}`) })).id);
  }
  const completed = await openai.uploads.complete(upload.id, { part_ids: ids });
  assert.equal(completed.status, 'completed');
  assert.equal(completed.file.bytes, bytes);
  assert.equal(await (await openai.files.content(completed.file.id)).text(), Buffer.concat(parts).toString());
  await openai.files.delete(completed.file.id);
});
