// A Lumo Framework handler, exactly as the Lumo docs write one: lumo bundles it and runs it
// on Node.js (20 or later) with the TaskContext.
import { tasks } from '@lumo-framework/core';

export const run: tasks.TaskHandler = async (ctx) => {
  const change = ctx.deployment.isFirstDeploy
    ? 'first release'
    : `update from ${ctx.deployment.previousVersion}`;
  console.log(`announcing the ${change} of ${ctx.deployment.environment}`);
  return {
    success: true,
    message: `announced the ${change}`,
    data: { environment: ctx.deployment.environment },
  };
};
