// The example project of this repository: `cargo run -p lumo-cli -- deploy --env dev --config lumo.config.example.js`
import { defineConfig, env } from '@lumo-framework/core';

export default defineConfig({
  projectName: 'lumo-example',
  provider: env('LUMO_PROVIDER', 'local'),
  environment: 'dev',
  environments: ['dev', 'staging', 'prod'],
  region: 'eu-west-2',

  secrets: {
    // Handed to every task as $API_TOKEN and masked as *** in all output and records.
    apiToken: {
      value: () => process.env.API_TOKEN ?? 'example-token-5f1c9a',
      description: 'Token for the cache API',
    },
  },

  tasks: {
    'run-migrations': {
      description: 'Applies the SQL files in migrations/ in order',
      timeout: 120,
      runOn: ['deploy', 'update'],
      copyAssets: [{ from: 'migrations', to: 'migrations' }],
      config: { database: 'app' },
    },
    seed: {
      description: 'Seeds reference data on the first deploy (a Rust task using the lumo-task SDK)',
      runOn: ['deploy'],
      timeout: 120,
      copyAssets: [{ from: 'migrations', to: 'migrations' }],
    },
    'warm-cache': {
      description: 'Requests the most popular pages so the first visitors are fast',
      timeout: 60,
      dependsOn: ['run-migrations'],
      env: { CACHE_HOST: 'cache.internal' },
    },
    'announce-release': {
      description: 'Announces the release (a TypeScript handler, as in the Lumo Framework)',
      timeout: 30,
      dependsOn: ['warm-cache'],
    },
    'disk-report': {
      description: 'Reports the bundle size (a command task, as in Lagoon)',
      command: 'du -sk . | cut -f1 | xargs -I{} echo "bundle uses {} KB"',
      runOn: ['change'],
      timeout: 30,
    },
    'purge-cache': {
      description: 'Purges one cache namespace (manual only)',
      runOn: [],
      permission: 'maintainer',
      args: {
        target: { description: 'the cache namespace to purge', required: true },
        mode: { description: 'how hard to purge', choices: ['soft', 'hard'], default: 'soft' },
      },
    },
  },
});
