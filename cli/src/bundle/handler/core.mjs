// `@lumo-framework/core` as lumo bundles it into every handler (cli/src/bundle/handler/mod.rs):
// the runtime surface Lumo Framework tasks use, so a task needs the package neither installed
// nor shipped. `tasks` holds only types (`tasks.TaskHandler`), so at runtime it is empty.

// As in the Lumo Framework: an unset or empty variable gives the fallback, which is ''.
export function env(name, fallback = '') {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

export const fromEnv = env;

export function defineConfig(config) {
  return config;
}

export const config = Object.freeze({ defineConfig, env, fromEnv });

// lumo hands each secret to tasks as the upper-snake-case form of its name (`api-key` →
// `API_KEY`, `databaseUrl` → `DATABASE_URL`): `secret_env_name` in runner/src/contract.rs.
function secretVariable(name) {
  const chars = [...String(name)];
  const alnum = (c) => c !== undefined && /[A-Za-z0-9]/.test(c);
  const upper = (c) => c !== undefined && /[A-Z]/.test(c);
  const lowerOrDigit = (c) => c !== undefined && /[a-z0-9]/.test(c);
  let out = '';
  chars.forEach((c, i) => {
    if (alnum(c)) {
      const previous = chars[i - 1];
      const nextIsLower = chars[i + 1] !== undefined && /[a-z]/.test(chars[i + 1]);
      const wordStarts =
        upper(c) && (lowerOrDigit(previous) || (upper(previous) && nextIsLower));
      if (wordStarts && out !== '' && !out.endsWith('_')) {
        out += '_';
      }
      out += c.toUpperCase();
    } else if (out !== '' && !out.endsWith('_')) {
      out += '_';
    }
  });
  return out.replace(/_+$/, '');
}

export async function getSecret(name) {
  return process.env[secretVariable(name)] || '';
}

export const secrets = Object.freeze({ getSecret });

export const tasks = Object.freeze({});
