// @medplum/core 5.2.13 fails to load without a global WebSocket class, which Node.js 20 lacks.
// The auth flows under test open no WebSocket, so a class that throws when constructed is enough.
// Import this module before '@medplum/core'.

if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class WebSocketUnavailable {
    constructor() {
      throw new Error('WebSocket is not available in these tests (Node.js 20 has no global WebSocket)');
    }
  };
}
