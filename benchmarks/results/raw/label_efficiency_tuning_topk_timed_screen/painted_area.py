"""Foreground area per true second of the slices each row painted (read from a run folder's annotation logs).

    python painted_area.py RUN_FOLDER ROW [ROW ...]
"""
import json,glob,sys,numpy as np
root=sys.argv[1]
for strat in sys.argv[2:]:
    A=[];S=[];F=[]
    for f in glob.glob(f"{root}/{strat}/seed_*/round_00*/annotation_log.jsonl"):
        for l in open(f):
            r=json.loads(l); A.append(r.get("area_mm2_1",0)+r.get("area_mm2_2",0)); S.append(r["seconds"]); F.append(r["foreground"])
    if not A: print(strat,"no logs yet"); continue
    A=np.array(A);S=np.array(S);F=np.array(F)
    print(f"{strat}: {len(A)} slices, fg share {F.mean():.2f}, mean area {A.mean():.0f} mm2, mean {S.mean():.1f} s, fg mm2 per s {A.sum()/S.sum():.2f}")
