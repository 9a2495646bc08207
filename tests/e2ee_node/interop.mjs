// Element's crypto stack (matrix-js-sdk + matrix-sdk-crypto-wasm, the Rust crypto that
// Element Web uses) as a practitioner's client against SantéGuard's encrypted bot.
//
// Run by tests/test_e2ee_interop.py with SG_HOMESERVER, SG_USER_ID, SG_DEVICE_ID,
// SG_ACCESS_TOKEN, SG_BOT_ID and SG_BOT_DEVICE_ID set. It creates an encrypted room,
// invites the bot, sends encrypted commands, decrypts the bot's encrypted replies, and
// checks that the bot's device is signed by its owner's cross-signing identity.
// The last stdout line is a JSON report; the exit status is 0 only if every check passed.

import * as sdk from "matrix-js-sdk";
import { EventShieldColour, EventShieldReason } from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const HOMESERVER = env("SG_HOMESERVER");
const USER_ID = env("SG_USER_ID");
const DEVICE_ID = env("SG_DEVICE_ID");
const ACCESS_TOKEN = env("SG_ACCESS_TOKEN");
const BOT_ID = env("SG_BOT_ID");
const BOT_DEVICE_ID = env("SG_BOT_DEVICE_ID");
const TIMEOUT_MS = Number(process.env.SG_TIMEOUT_MS || 60000);

// The Rust crypto traces at debug level through console.*: keep stdout for the report.
const report = (value) => process.stdout.write(JSON.stringify(value) + "\n");
if (!process.env.SG_JS_DEBUG) {
  logger.setLevel("warn");
  console.log = console.info = console.debug = console.trace = () => {};
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function waitForSync(client) {
  return new Promise((resolve, reject) => {
    const onSync = (state) => {
      if (state === "PREPARED" || state === "SYNCING") {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      } else if (state === "ERROR") {
        client.off(sdk.ClientEvent.Sync, onSync);
        reject(new Error("initial sync failed"));
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
  });
}

function waitForMember(client, roomId, userId) {
  const joined = () =>
    client.getRoom(roomId)?.getMember(userId)?.membership === sdk.KnownMembership.Join;
  return new Promise((resolve) => {
    if (joined()) return resolve();
    const onMember = () => {
      if (joined()) {
        client.off(sdk.RoomStateEvent.Members, onMember);
        resolve();
      }
    };
    client.on(sdk.RoomStateEvent.Members, onMember);
  });
}

// Resolves with the first bot reply (an encrypted event, decrypted by the Rust crypto)
// arriving after `since` whose body contains `fragment`.
function waitForBotReply(client, roomId, fragment) {
  return new Promise((resolve) => {
    const check = (event) => {
      if (event.getRoomId() !== roomId || event.getSender() !== BOT_ID) return;
      if (!event.isEncrypted() || event.isBeingDecrypted() || event.isDecryptionFailure()) return;
      const content = event.getContent();
      if (content.msgtype !== "m.notice" || !String(content.body).includes(fragment)) return;
      client.off(sdk.MatrixEventEvent.Decrypted, check);
      client.off(sdk.RoomEvent.Timeline, check);
      resolve(event);
    };
    client.on(sdk.MatrixEventEvent.Decrypted, check);
    client.on(sdk.RoomEvent.Timeline, check);
  });
}

async function main() {
  const client = sdk.createClient({
    baseUrl: HOMESERVER,
    userId: USER_ID,
    deviceId: DEVICE_ID,
    accessToken: ACCESS_TOKEN,
  });
  // In-memory crypto store: Node has no IndexedDB, and this device lives for one run.
  await client.initRustCrypto({ useIndexedDB: false });
  const crypto = client.getCrypto();
  const synced = waitForSync(client);
  await client.startClient({ initialSyncLimit: 10, lazyLoadMembers: false });
  await withTimeout(synced, TIMEOUT_MS, "the first sync");

  const result = { ok: false, replies: [] };
  try {
    const { room_id: roomId } = await client.createRoom({
      preset: "private_chat",
      name: "Interop Rust crypto",
      invite: [BOT_ID],
      initial_state: [
        {
          type: "m.room.encryption",
          state_key: "",
          content: { algorithm: "m.megolm.v1.aes-sha2" },
        },
      ],
    });
    result.room_id = roomId;
    await withTimeout(waitForMember(client, roomId, BOT_ID), TIMEOUT_MS, "the bot to join");

    for (const [command, fragment] of [
      ["!sg ping", "pong"],
      ["!sg chiffrement", "m.megolm.v1.aes-sha2"],
    ]) {
      const reply = waitForBotReply(client, roomId, fragment);
      const started = Date.now();
      const sent = await client.sendTextMessage(roomId, command);
      const sentEvent = client.getRoom(roomId)?.findEventById(sent.event_id);
      const event = await withTimeout(reply, TIMEOUT_MS, `the bot's reply to ${command}`);
      // Element's shield for the message: none (0) unless something is wrong; a device
      // not signed by its owner would show red with UNSIGNED_DEVICE.
      const info = await crypto.getEncryptionInfoForEvent(event);
      result.replies.push({
        shield: info ? EventShieldColour[info.shieldColour] : null,
        shield_reason: info && info.shieldReason !== null ? EventShieldReason[info.shieldReason] : null,
        command,
        sent_encrypted: sentEvent ? sentEvent.isEncrypted() : null,
        reply_encrypted: event.isEncrypted(),
        reply_body: event.getContent().body,
        reply_sender_device: event.getWireContent().device_id ?? null,
        ms: Date.now() - started,
      });
    }

    // Ask the server for the bot's keys, then what the Rust crypto thinks of its device.
    await crypto.getUserDeviceInfo([BOT_ID], true);
    const status = await crypto.getDeviceVerificationStatus(BOT_ID, BOT_DEVICE_ID);
    const identity = await crypto.getUserVerificationStatus(BOT_ID);
    result.bot_device = status && {
      signedByOwner: status.signedByOwner,
      crossSigningVerified: status.crossSigningVerified,
      locallyVerified: status.locallyVerified,
    };
    result.bot_identity_known = identity !== null;
    result.ok =
      result.replies.length === 2 &&
      result.replies.every(
        (r) => r.sent_encrypted && r.reply_encrypted && r.shield === "NONE",
      ) &&
      status !== null &&
      status.signedByOwner === true;
  } finally {
    client.stopClient();
  }
  report(result);
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    report({ ok: false, error: String(err && err.stack ? err.stack : err) });
    process.exit(2);
  },
);
