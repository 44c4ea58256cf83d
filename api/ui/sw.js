// The operator app's service worker, served at /sw.js (scope: the whole app) with the build filled in.
//
// It keeps this build's shell and files in one cache named after the build (a digest of every file), so a
// reload without a network still shows the app. Files under /ui/<build>/ never change: they are answered
// from the cache. The shell is asked of the server first (it names the current build), and answered
// from the cache only when the server cannot be reached. The API is never cached here: the last-known
// fleet is the page's own (IndexedDB, offline.js), kept per signed-in tab.
"use strict";

const BUILD = "__BUILD__";
const CACHE = "fleetbridge-" + BUILD;
const SHELL = "/";
const FILES = __FILES__;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll([SHELL, ...FILES])).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("fleetbridge-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/ui/")) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  } else if (request.mode === "navigate" && url.pathname === SHELL) {
    event.respondWith(
      fetch(request).catch(() => caches.match(SHELL).then((hit) => hit || Response.error())),
    );
  }
});
