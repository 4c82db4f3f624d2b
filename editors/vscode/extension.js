// The SCL extension's client: starts `scl lsp` (see the `scl.server.*`
// settings) for .scl files and restarts it when those settings change.
// Plain JavaScript, so the extension needs no build step: `npm install`
// fetches vscode-languageclient and the folder is the extension.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function createClient() {
  const config = vscode.workspace.getConfiguration('scl');
  const command = config.get('server.path', 'scl');
  const args = config.get('server.args', ['lsp']);
  const server = { command, args, transport: TransportKind.stdio };
  return new LanguageClient(
    'scl',
    'SCL language server',
    { run: server, debug: server },
    {
      documentSelector: [{ scheme: 'file', language: 'scl' }],
      // The server reads the workspace's deployment file (deploy.toml).
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.toml') },
    },
  );
}

async function activate(context) {
  client = createClient();
  await client.start();
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration('scl.server')) {
        return;
      }
      await client.stop();
      client = createClient();
      await client.start();
    }),
  );
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
