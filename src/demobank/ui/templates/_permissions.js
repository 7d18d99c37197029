  // manageRefusal(me): why the signed-in user (GET /whoami's answer; null while it loads) may not change targets,
  // or null when they may. The pages disable what it refuses; the API checks every request anyway.
  function manageRefusal(me) {
    if (me === null || me === undefined) return "Checking your permissions…";
    if (me.permissions.manage) return null;
    const needs = me.needs.manage;
    return "You (" + me.user + ") may not " + needs.action + ": that needs " + needs.permission + ".";
  }
