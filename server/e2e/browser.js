// Headless Chromium for the tests that open a page (the demo, the gateway's chat example, the admin
// UI): Debian's /usr/bin/chromium (CHROMIUM_BIN overrides it) driven by playwright-core, which never
// downloads a browser. Each launch gets a fresh temporary profile, removed when the browser closes.

import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { chromium } from "playwright-core";

import { assertExecutable } from "./harness.js";

/** The browser the tests drive. */
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

/** Fails loudly, with the install command, when the browser is missing. */
export function assertChromium() {
  assertExecutable(CHROMIUM, "Install it with `apt-get install -y chromium` (or set CHROMIUM_BIN).");
}

/**
 * Launches headless Chromium with a fresh profile and returns its (persistent) browser context:
 * a persistent context is how playwright takes an explicit --user-data-dir. Closing the context
 * removes the profile.
 */
export async function launchChromium() {
  assertChromium();
  const profile = mkdtempSync(path.join(os.tmpdir(), "switchboard-chromium-"));
  const removeProfile = () => rmSync(profile, { recursive: true, force: true });
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    // Chromium may still write to the profile until close() resolves (not when "close" fires).
    const close = context.close.bind(context);
    context.close = async (...args) => {
      try {
        await close(...args);
      } finally {
        removeProfile();
      }
    };
    return context;
  } catch (error) {
    removeProfile();
    throw error;
  }
}
