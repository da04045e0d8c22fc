// @medplum/core's subscribeToCriteria against a real server: reads {"baseUrl", "token",
// "criteria"} on stdin (the first line), then writes one JSON line per event to stdout:
// {"event": "connect"}, {"event": "message", "bundle": …}, {"event": "error", …}. Runs until
// it is killed. Node 20: run with --experimental-websocket (the global WebSocket).
import { MedplumClient } from '@medplum/core';
import { createInterface } from 'node:readline';

const lines = createInterface({ input: process.stdin });
const first = await new Promise((resolve) => lines.once('line', resolve));
const { baseUrl, token, criteria } = JSON.parse(first);
const medplum = new MedplumClient({ baseUrl, fetch });
medplum.setAccessToken(token);
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const emitter = medplum.subscribeToCriteria(criteria);
emitter.addEventListener('connect', (event) => say({ event: 'connect', ...event.payload }));
emitter.addEventListener('message', (event) => say({ event: 'message', bundle: event.payload }));
emitter.addEventListener('error', (event) => say({ event: 'error', error: String(event.payload) }));
emitter.addEventListener('disconnect', () => say({ event: 'disconnect' }));
